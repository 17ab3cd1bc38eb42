"""Reference runs ship as package data (skiplib.reference = results/) and new runs never go there.

The slow tests build skiplib as a wheel and as an editable install from a temporary copy of the
repository (git-tracked and untracked-not-ignored files, plus one small reference JSON the test
writes), install each into a temporary folder and import it from a folder outside the
repository: what a learner on Colab gets from ``pip install "skiplib @ git+URL"``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from setuptools import find_packages

import skiplib.cli as cli
from skiplib import results as P
from skiplib.chapters.ch01_degradation import result_name

from _paths import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on Python 3.10 (pyproject.toml): these tests never skip
    import tomli as tomllib

PAYLOAD = {"experiment": "degradation", "config": {"depths": [20, 56], "epochs": 2},
           "provenance": {"command": "python -m skiplib degradation --profile gpu", "commit": "unknown",
                          "device": "test", "profile": "gpu"}}
TEST_RUN = "wheel-test-gpu"  # the reference run the slow tests add to their copy of the repository
BAD_NAMES = ["", "../degradation-gpu", "results/degradation-gpu", "a\\b", "/etc/passwd", ".hidden",
             "degradation-gpu.json", "degradation gpu", 7]


# --- packaging configuration (fast) -------------------------------------------------------------

def test_pyproject_packages_every_skiplib_package_and_results_as_reference():
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert setuptools_cfg["package-dir"] == {"skiplib.reference": "results"}
    on_disk = set(find_packages(str(ROOT), include=["skiplib", "skiplib.*"]))
    assert on_disk >= {"skiplib", "skiplib.blocks", "skiplib.models", "skiplib.chapters", "skiplib.tools"}
    listed = set(setuptools_cfg["packages"])
    assert listed == on_disk | {"skiplib.reference"}, (
        f"pyproject.toml [tool.setuptools] packages: missing {sorted(on_disk - listed)}, "
        f"extra {sorted(listed - on_disk - {'skiplib.reference'})}")
    assert "results" not in listed
    assert setuptools_cfg["package-data"]["skiplib.reference"] == ["*.json", "*.csv"]
    init = ROOT / "results" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    assert "skiplib.reference" in text and "importlib.resources" in text


# --- save_result (fast) -------------------------------------------------------------------------

def test_save_result_defaults_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = P.save_result("demo-smoke", PAYLOAD)
    assert path == tmp_path / "demo-smoke.json"
    assert json.loads(path.read_text()) == PAYLOAD
    assert P.load_result("demo-smoke", tmp_path) == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-smoke.json"]  # no temporary file left


def test_save_result_replaces_atomically(tmp_path, monkeypatch):
    P.save_result("demo-smoke", PAYLOAD, tmp_path)

    def broken_replace(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(P.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk went away"):
        P.save_result("demo-smoke", {"experiment": "half-written"}, tmp_path)
    assert P.load_result("demo-smoke", tmp_path) == PAYLOAD  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-smoke.json"]


@pytest.mark.parametrize("inside", ["site-packages", "dist-packages"])
def test_save_result_refuses_site_packages(tmp_path, monkeypatch, inside):
    target = tmp_path / "lib" / "python3.11" / inside / "somewhere"
    with pytest.raises(ValueError, match="--out-dir"):
        P.save_result("demo-smoke", PAYLOAD, target)
    assert not target.exists()
    target.mkdir(parents=True)
    monkeypatch.chdir(target)  # the default (the current folder) is checked too
    with pytest.raises(ValueError, match="--out-dir"):
        P.save_result("demo-smoke", PAYLOAD)
    assert list(target.iterdir()) == []


def test_save_result_refuses_the_skiplib_package(tmp_path, monkeypatch):
    # the real package folder, checked without writing (a broken check must not write there)
    real = Path(P.skiplib.__file__).resolve().parent
    assert P._inside_installation(real) and P._inside_installation(real / "reference")
    assert not P._inside_installation(real.parent / "results")  # a checkout's results/ is fine
    fake_package = tmp_path / "skiplib"
    monkeypatch.setattr(P, "PACKAGE_DIR", fake_package)
    with pytest.raises(ValueError, match="--out-dir"):
        P.save_result("demo-smoke", PAYLOAD, fake_package / "reference")
    assert not fake_package.exists()


# --- load_result, available_results (fast) ------------------------------------------------------

@pytest.mark.parametrize("name", BAD_NAMES)
def test_result_names_must_be_plain_file_stems(tmp_path, name):
    for call in (lambda: P.load_result(name), lambda: P.load_result(name, tmp_path),
                 lambda: P.save_result(name, PAYLOAD, tmp_path), lambda: P.missing_result_message(name)):
        with pytest.raises(ValueError, match="plain file stem"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_load_result_reads_the_shipped_runs_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_reference_dir", lambda: tmp_path)
    (tmp_path / "__init__.py").write_text('"""x"""\n')
    (tmp_path / "degradation-gpu.json").write_text(json.dumps(PAYLOAD))
    (tmp_path / "compare-gpu.json").write_text(json.dumps({**PAYLOAD, "experiment": "compare"}))
    (tmp_path / "compare-gpu.csv").write_text("a,b\n1,2\n")
    assert P.load_result("degradation-gpu") == PAYLOAD
    assert P.load_result("compare-gpu")["experiment"] == "compare"
    assert P.load_result("landscape-gpu") is None
    assert P.load_result("degradation-gpu", tmp_path / "elsewhere") is None  # directory= wins
    assert P.available_results() == ["compare-gpu", "degradation-gpu"]


def test_installed_reference_folder_is_skiplib_reference():
    """In this environment the reference runs come from skiplib.reference, i.e. results/ of this checkout."""
    ref = P._reference_dir()
    assert ref is not None and Path(str(ref)).resolve() == (ROOT / "results").resolve()
    shipped = sorted(p.stem for p in (ROOT / "results").glob("*.json"))
    assert P.available_results() == shipped
    for name in shipped:
        assert P.load_result(name) == json.loads((ROOT / "results" / f"{name}.json").read_text(encoding="utf-8"))


# --- missing_result_message (fast) --------------------------------------------------------------

# name -> (experiment module, the CLI subcommand, its --profile or None)
KNOWN = {
    "degradation-gpu": ("ch01_degradation", "degradation", "gpu"),
    "degradation-smoke": ("ch01_degradation", "degradation", "smoke"),
    "highway-depth-gpu": ("ch03_highway", "highway", "gpu"),
    "highway-conv-gpu": ("ch03_conv", "highway", "gpu"),
    "compare-gpu": ("ch07_comparison", "compare", "gpu"),
    "densenet-cpu": ("ch05_reference", "densenet", "cpu"),
    "landscape-gpu": ("ch08_why", "landscape", "gpu"),
    "dense-memory-cuda": ("ch05_densenets", "dense-memory", None),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_missing_result_message_names_a_real_command(name, monkeypatch):
    module_name, subcommand, profile = KNOWN[name]
    message = P.missing_result_message(name)
    assert f"`{name}`" in message and skiplib_version() in message
    commands = re.findall(r"`(python -m skiplib [^`]*)`", message)
    assert len(commands) == 1, message
    argv = commands[0].split()[3:]
    assert argv[0] == subcommand

    # the command parses in the real CLI and reaches the experiment that writes <name>.json
    module = importlib.import_module(f"skiplib.chapters.{module_name}")
    prefix = name.rsplit("-", 1)[0]
    source = inspect.getsource(module.main)  # the name it saves (run_and_save, save_result)
    assert f'f"{prefix}-{{' in source or f'result_name("{prefix}", profile, args)' in source
    seen = []
    monkeypatch.setattr(module, "main", lambda args: seen.append(args) or 0)
    assert cli.main(argv) == 0
    (args,) = seen
    assert Path(args.out_dir) == Path("results")
    if profile is None:
        assert args.save and args.device == name.rsplit("-", 1)[1]
    else:
        assert args.profile == profile


@pytest.mark.parametrize("name", ["densenet121-gpu", "degradation-tpu", "my-experiment"])
def test_missing_result_message_invents_no_command(name):
    message = P.missing_result_message(name)
    assert f"`{name}`" in message and "No `python -m skiplib` command makes" in message
    assert "--profile" not in message and P.result_command(name) is None


@pytest.mark.parametrize("name, command", [
    ("compare-cpu-long", "python -m skiplib compare --profile cpu --tag long"),
    ("highway-conv-gpu-long", "python -m skiplib highway --part conv --profile gpu --tag long"),
    ("densenet-cpu-long", "python -m skiplib densenet --profile cpu --tag long"),
])
def test_missing_tagged_result_names_the_command_without_inventing_its_settings(name, command):
    message = P.missing_result_message(name)
    assert f"It is a longer run of `{command}`" in message and "results/README.md" in message
    assert P.result_command(name) is None  # its settings (epochs, seeds) are not in its name


def skiplib_version() -> str:
    return P.skiplib.__version__


# --- git_commit (fast) --------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_is_unknown_for_an_installed_skiplib_inside_another_repository(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    installed_root = tmp_path / ".venv" / "lib" / "python3.11"  # parents[2] of site-packages/skiplib/experiments/...
    installed_root.mkdir(parents=True)
    monkeypatch.setattr(P, "REPO_ROOT", installed_root)
    assert P.git_commit() == "unknown"
    monkeypatch.setattr(P, "REPO_ROOT", tmp_path / "nowhere")
    assert P.git_commit() == "unknown"


# --- a real wheel and a real editable install (slow) --------------------------------------------

def _env(tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["SKIPLIB_DATA"] = str(tmp / "skiplib-data")  # never the real ~/.cache/skiplib
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {**env, **extra}


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The repository's files (tracked + untracked-not-ignored) plus the test's reference run."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of skiplib")
    src = tmp_path_factory.mktemp("repo") / "skiplib-src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    assert (src / "results" / "__init__.py").is_file()
    (src / "results" / f"{TEST_RUN}.json").write_text(json.dumps(PAYLOAD, indent=1) + "\n")
    return src


def _run_python(code: str, cwd: Path, env: dict, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter of this environment; it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = f"""
import json, skiplib
from importlib.resources import files
from skiplib.results import available_results, load_result, missing_result_message
print(json.dumps({{"file": skiplib.__file__, "reference": str(files("skiplib.reference")),
                   "loaded": load_result("{TEST_RUN}"), "available": available_results(),
                   "missing": load_result("landscape-smoke"), "message": missing_result_message("landscape-smoke")}}))
"""


@pytest.mark.slow
def test_wheel_ships_reference_runs_and_a_plain_install_loads_them(source_copy, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(wheels), str(source_copy)], check=True, env=_env(tmp_path), timeout=300)
    (wheel,) = wheels.glob("skiplib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    # every package of the source, the reference runs under skiplib/reference/, no top-level results/
    for init in (source_copy / "skiplib").rglob("__init__.py"):
        assert init.relative_to(source_copy).as_posix() in names, f"{init.parent.name} is not in the wheel"
    assert "skiplib/reference/__init__.py" in names and f"skiplib/reference/{TEST_RUN}.json" in names
    assert not [n for n in names if n.startswith("results/")]
    (top_level_txt,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    top_level = zipfile.ZipFile(wheel).read(top_level_txt).decode().split()
    assert top_level == ["skiplib"]
    committed = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.split()
    for rel in committed:
        if rel.endswith((".json", ".csv")):
            assert f"skiplib/reference/{Path(rel).name}" in names, f"{rel} is not in the wheel"
            assert zipfile.ZipFile(wheel).read(f"skiplib/reference/{Path(rel).name}") == (ROOT / rel).read_bytes()

    # a normal (non-editable) install, imported from outside the repository
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheel)], check=True, env=_env(tmp_path), timeout=300)
    seen = _run_python(PROBE, work, _env(tmp_path, PYTHONPATH=str(target)))
    assert Path(seen["file"]).resolve().is_relative_to(target.resolve()), seen["file"]
    assert Path(seen["reference"]).resolve() == (target / "skiplib" / "reference").resolve()
    assert seen["loaded"] == PAYLOAD
    assert TEST_RUN in seen["available"]
    assert seen["missing"] is None and "python -m skiplib landscape --profile smoke" in seen["message"]


EDITABLE_PROBE = """
import glob, importlib.util, sys
# forget this environment's own editable skiplib, then activate the one under test
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
(finder,) = glob.glob(sys.argv[1] + "/__editable__*finder.py")
spec = importlib.util.spec_from_file_location("_editable_under_test", finder)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.install()
""" + PROBE


@pytest.mark.slow
def test_editable_install_maps_results_onto_skiplib_reference(source_copy, tmp_path):
    built = tmp_path / "editable"
    subprocess.run([sys.executable, "-c", f"import setuptools.build_meta as b; b.build_editable({str(built)!r})"],
                   cwd=source_copy, check=True, env=_env(tmp_path), capture_output=True, timeout=300)
    (wheel,) = built.glob("skiplib-*.whl")
    target, work = tmp_path / "site", tmp_path / "work"
    zipfile.ZipFile(wheel).extractall(target)
    work.mkdir()
    seen = _run_python(EDITABLE_PROBE, work, _env(tmp_path), str(target))
    assert Path(seen["file"]).resolve() == (source_copy / "skiplib" / "__init__.py").resolve()
    assert Path(seen["reference"]).resolve() == (source_copy / "results").resolve()
    assert seen["loaded"] == PAYLOAD and TEST_RUN in seen["available"]


SHIPPED = sorted(p for p in (ROOT / "results").glob("*.json") if p.stem != "gpu-check")
MODULES = {"degradation": "ch01_degradation", "compare": "ch07_comparison", "landscape": "ch08_why",
           "highway": "ch03_highway", "densenet": "ch05_reference",
           "highway-depth": "ch03_highway", "highway-conv": "ch03_conv"}
# experiment -> (its CLI subcommand, the --part it needs), where they differ from the experiment's name
COMMANDS = {"highway-depth": ("highway", "depth"), "highway-conv": ("highway", "conv")}
# experiment -> {CLI option: the config key it overrides}, where that key is not the option's name
CONFIG_KEYS = {"highway-depth": {"epochs": "fc_epochs"}}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_reference_run_has_provenance_and_a_command_the_cli_takes(path, monkeypatch):
    run = json.loads(path.read_text(encoding="utf-8"))
    assert {"experiment", "config", "provenance"} <= set(run), path.name
    prov = run["provenance"]
    for key in ("command", "commit", "device", "data_source", "date", "seconds", "profile", "torch", "host_cpus"):
        assert prov.get(key) not in (None, ""), (path.name, key)
    assert prov["profile"] == run["config"]["profile"] and path.stem.startswith(f"{run['experiment']}-{prov['profile']}")
    assert "JPEG copy" in prov["data_source"]  # the offline copy, named as such (never passed off as the original)
    if run.get("partial"):
        assert prov.get("note"), f"{path.name} is partial: its provenance must say what did not finish"
    # the command parses in today's CLI and reaches the experiment's entry point with the recorded settings
    words = prov["command"].split()
    command, part = COMMANDS.get(run["experiment"], (run["experiment"], None))
    assert words[:3] == ["python", "-m", "skiplib"] and words[3] == command
    module = importlib.import_module(f"skiplib.chapters.{MODULES[run['experiment']]}")
    seen = []
    monkeypatch.setattr(module, "main", lambda args: seen.append(args) or 0)
    assert cli.main(words[3:]) == 0
    (args,) = seen
    assert args.profile == prov["profile"] and getattr(args, "part", None) == part
    for option in ("epochs", "depths", "seeds", "train_subset", "image_size"):
        if getattr(args, option, None) is not None:
            key = CONFIG_KEYS.get(run["experiment"], {}).get(option, option)
            expected = None if args.__dict__[option] == "all" else args.__dict__[option]
            assert run["config"][key] == expected, (path.name, option)
    assert path.stem == result_name(run["experiment"], SimpleNamespace(name=args.profile), args)
