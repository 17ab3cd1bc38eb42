"""Run a chapter notebook the way a learner meets it on Colab, on this machine.

What "on Colab" means here, piece by piece:

* **Colab's preinstalled stack only.** A virtual environment of its own (``_build/colab-env``)
  holding :data:`COLAB_PREINSTALLED` and nothing of the course: no skiplib, no myst-nb, no
  sphinx, no torchinfo. torch and torchvision are pinned to the versions of the project's
  ``.venv`` (the ones this machine installs from local disk).
* **``google.colab`` is imported at kernel start**, as on Colab: a stand-in package in that
  environment, imported by an IPython startup file. The chapters' bootstrap cell keys on it.
* **The bootstrap installs skiplib from the repository URL in ``_config.yml``.** git, through
  a private config (``GIT_CONFIG_GLOBAL``), redirects that URL to a snapshot of the checkout
  under test (tracked and untracked-but-not-ignored files, committed in a temporary repo),
  so pip's ``git+`` install is the same non-editable install Colab makes, of the code under
  test. Before each chapter skiplib and its non-Colab dependencies are uninstalled again.
* **A working folder that holds nothing of the repository**, and the ``smoke`` profile.

``run_notebook`` returns a :class:`ColabRun`; a failing cell is reported, never raised, so a
caller can check failures too (``tests/book/test_colab.py`` checks that a chapter importing a
package Colab lacks fails here). Command line: ``python tests/colab_emulation.py [NOTEBOOK ...]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from skiplib.tools.notebooks import repository_url

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = REPO_ROOT / "_build" / "colab-env"
KERNEL_NAME = "colab-emulation"
# What Colab preinstalls that the chapters may rely on (DESIGN.md: torch, torchvision, numpy,
# matplotlib, ipywidgets, tqdm), plus the pieces any Colab kernel has (IPython, ipykernel, PIL).
COLAB_PREINSTALLED = ("numpy", "matplotlib", "ipywidgets", "tqdm", "pillow", "ipykernel")
# Installed by `pip install skiplib` but not on Colab: removed before each chapter, so every
# chapter's bootstrap starts from Colab's state.
NOT_ON_COLAB = ("skiplib", "torchinfo")
# Packages a chapter must never need on Colab (the book toolchain); checked after each run.
BOOK_TOOLS = ("myst_nb", "sphinx", "jupyter_book")
MARKER = "COLAB-EMULATION-RESULT "


@dataclass
class ColabRun:
    """The outcome of one notebook in the emulated Colab."""

    notebook: str
    ok: bool
    seconds: float
    error: str = ""
    skiplib_file: str = ""
    outputs_tail: list[str] = field(default_factory=list)


def _venv_python(env_dir: Path = ENV_DIR) -> Path:
    return env_dir / "bin" / "python"


def _version(module: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(module)


def _requirements() -> list[str]:
    # torch/torchvision pinned to the project's: the CUDA build this machine installs from disk,
    # and a torchvision that imports beside it
    return [f"torch=={_version('torch')}", f"torchvision=={_version('torchvision')}", *COLAB_PREINSTALLED]


def ensure_env(env_dir: Path = ENV_DIR) -> Path:
    """Create (once) the Colab-like environment; return its Python. Rebuilt when the list changes."""
    stamp = env_dir / ".colab-emulation"
    wanted = "\n".join(_requirements()) + "\n"
    python = _venv_python(env_dir)
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    shutil.rmtree(env_dir, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *_requirements()], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # google.colab: a namespace 'google' (as protobuf uses it) with a stand-in 'colab' inside
    colab = site / "google" / "colab"
    colab.mkdir(parents=True, exist_ok=True)
    (colab / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (the course\'s Colab emulation test)."""\n')
    stamp.write_text(wanted)
    return python


def snapshot_repository(dest: Path) -> Path:
    """A git repository holding the working tree as it is now (committed), for pip's git+ install."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    dest.mkdir(parents=True)
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=colab-emulation", "-c", "user.email=colab@emulation.invalid", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot of the checkout under test"]):
        subprocess.run([*git, *args], cwd=dest, check=True, env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull})
    return dest


class ColabEmulator:
    """One emulated Colab (environment, redirected repository URL, kernel set-up) for many notebooks."""

    def __init__(self, workdir: Path, *, data_dir: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.python = ensure_env()
        self.repo = snapshot_repository(self.workdir / "repository")
        gitconfig = self.workdir / "gitconfig"
        gitconfig.write_text(f'[url "file://{self.repo}"]\n\tinsteadOf = {repository_url()}\n')
        ipython_dir = self.workdir / "ipython"
        startup = ipython_dir / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-colab.py").write_text("import google.colab  # Colab imports it before any cell runs\n")
        self.data_dir = data_dir or self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kernels = self.workdir / "kernels" / KERNEL_NAME
        kernels.mkdir(parents=True)
        (kernels / "kernel.json").write_text(json.dumps({
            "argv": [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Colab emulation", "language": "python",
        }))
        self.kernel_dirs = [str(self.workdir / "kernels")]
        # The kernel's whole environment: nothing of this process's (no .venv on PATH, no PYTHONPATH).
        self.env = {
            "PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", str(self.workdir)),
            "LANG": "C.UTF-8",
            "IPYTHONDIR": str(ipython_dir),
            "GIT_CONFIG_GLOBAL": str(gitconfig),
            "GIT_CONFIG_NOSYSTEM": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "SKIPLIB_PROFILE": "smoke",
            "SKIPLIB_DATA": str(self.data_dir),
            "SKIPLIB_CHECKPOINTS": str(self.workdir / "checkpoints"),
        }
        for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                    "PIP_CONFIG_FILE", "PIP_CACHE_DIR", "XDG_CACHE_HOME"):
            if key in os.environ:
                self.env[key] = os.environ[key]

    def reset(self) -> None:
        """Colab's state before a chapter: skiplib and its non-Colab dependencies not installed."""
        # run from the empty working folder: a checkout in the current folder would be importable
        subprocess.run([str(self.python), "-m", "pip", "uninstall", "-q", "-y", *NOT_ON_COLAB],
                       check=True, capture_output=True, cwd=self.workdir, env=self.env)
        found = subprocess.run([str(self.python), "-c", "import importlib.util as u, sys; "
                                f"sys.exit(any(u.find_spec(m) for m in {NOT_ON_COLAB + BOOK_TOOLS!r}))"],
                               cwd=self.workdir, env=self.env)
        if found.returncode:
            raise RuntimeError(f"the Colab environment {ENV_DIR} holds one of {NOT_ON_COLAB + BOOK_TOOLS}: delete it")

    def run_notebook(self, path: Path | nbformat.NotebookNode, *, name: str | None = None,
                     timeout: int = 600) -> ColabRun:
        """Execute a notebook top to bottom in a fresh emulated Colab; report, never raise, a failure."""
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        nb = nbformat.read(str(path), as_version=4) if isinstance(path, (str, Path)) else path
        name = name or (Path(path).name if isinstance(path, (str, Path)) else "notebook")
        self.reset()
        cwd = Path(tempfile.mkdtemp(prefix="content-", dir=self.workdir))  # Colab's /content: empty
        # After the chapter: where skiplib came from, and that no book tool crept in.
        nb.cells.append(nbformat.v4.new_code_cell(
            "import importlib.util as _u, json as _j, skiplib as _s\n"
            f"print({MARKER!r} + _j.dumps({{'skiplib': _s.__file__, "
            f"'book_tools': [m for m in {BOOK_TOOLS!r} if _u.find_spec(m)]}}))"))
        km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=self.kernel_dirs))
        client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(cwd)}})
        t0 = time.perf_counter()
        error = ""
        try:
            client.execute(env=self.env, cwd=str(cwd))
        except CellExecutionError as e:
            error = f"{e.ename}: {e.evalue}"
        except (CellTimeoutError, DeadKernelError) as e:
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        seconds = time.perf_counter() - t0
        texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if o.get("output_type") == "stream"]
        run = ColabRun(notebook=name, ok=not error, seconds=seconds, error=error,
                       outputs_tail=[line for t in texts[-3:] for line in t.splitlines()][-8:])
        report = next((json.loads(line[len(MARKER):]) for t in texts for line in t.splitlines()
                       if line.startswith(MARKER)), None)
        if report is not None:
            run.skiplib_file = report["skiplib"]
            if report["book_tools"]:
                run.ok, run.error = False, f"book tools importable in the Colab kernel: {report['book_tools']}"
        return run


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted((REPO_ROOT / "book").glob("*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="colab-emulation-") as tmp:
        emulator = ColabEmulator(Path(tmp))
        runs = [emulator.run_notebook(p) for p in paths]
    for r in runs:
        print(f"{r.notebook:<36} {'ok' if r.ok else 'FAILED':<7} {r.seconds:6.1f} s  {r.error}")
    print(json.dumps([asdict(r) for r in runs], indent=1))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
