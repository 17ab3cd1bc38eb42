"""Repository invariants: packaging, notebooks, table of contents, config, citations, CI.

These run offline in seconds and fail with a message that says how to fix the repository.
"""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from skiplib.tools import notebooks

from _paths import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on Python 3.10 (pyproject.toml): these tests never skip
    import tomli as tomllib

BOOK = ROOT / "book"
BOOK_NOTEBOOKS = notebooks.notebook_paths([BOOK])


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _load_yaml(name: str) -> dict:
    with open(ROOT / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


# --- packaging (environment.yml and constraints/: tests/test_environment_yml.py) --------


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs: dict[str, SpecifierSet] = {}
    lists = [project["dependencies"], *project["optional-dependencies"].values()]
    for line in (item for group in lists for item in group):
        req = Requirement(line)
        if canonicalize_name(req.name) == "skiplib":  # dev = skiplib[test,book]
            continue
        reqs[canonicalize_name(req.name)] = req.specifier
    return reqs


def test_pyproject_pins_jupyter_book_1():
    spec = _pyproject_requirements()["jupyter-book"]
    assert "1.0.4" in spec and "1.99" in spec and "2.0" not in spec


# --- notebooks -------------------------------------------------------------------------


def test_book_has_notebooks():
    assert BOOK_NOTEBOOKS, "no notebooks under book/"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_ids(BOOK_NOTEBOOKS))
def test_notebook_is_committed_clean(path: Path):
    problems = notebooks.problems(path)
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_ids(BOOK_NOTEBOOKS))
def test_notebook_opens_with_title_then_bootstrap(path: Path):
    nb = notebooks.read(path)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        f"{path.name}: the first cell must be markdown starting with '# Title'"
    )
    code = notebooks.first_code_cell(nb)
    assert code is not None and code.source == notebooks.bootstrap_source(), (
        f"{path.name}: the first code cell must be the Colab bootstrap "
        "(python -m skiplib.tools.notebooks sync-bootstrap)"
    )
    assert "hide-input" in code.metadata.get("tags", [])


def test_bootstrap_uses_the_configured_repository():
    url = notebooks.repository_url()
    src = notebooks.bootstrap_source()
    assert url.startswith("https://") and f'REPO_URL = "{url}"' in src
    assert "google.colab" in src and "git+{REPO_URL}" in src
    compile(src, "<bootstrap>", "exec")  # valid Python


def test_bootstrap_does_nothing_off_colab():
    namespace: dict = {}
    exec(notebooks.bootstrap_source(url="https://example.invalid/repo"), namespace)
    assert namespace["REPO_URL"] == "https://example.invalid/repo"


def test_strip_and_sync_round_trip(tmp_path: Path):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(1)", execution_count=3)
    code.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    code.metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), code]
    nb.metadata["widgets"] = {"state": {}}
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)

    assert len(notebooks.problems(path)) == 2
    assert notebooks.strip_outputs([tmp_path]) == [path]
    assert notebooks.sync_bootstrap([tmp_path]) == [path]
    assert notebooks.problems(path) == []
    assert notebooks.strip_outputs([tmp_path]) == [] and notebooks.sync_bootstrap([tmp_path]) == []

    out = notebooks.read(path)
    assert [c.cell_type for c in out.cells] == ["markdown", "code", "code"]
    assert out.cells[1].source == notebooks.bootstrap_source()
    assert out.cells[2].source == "print(1)" and out.cells[2].outputs == []
    assert "widgets" not in out.metadata and "execution" not in out.cells[2].metadata
    assert notebooks.main(["check", str(tmp_path)]) == 0


def test_check_reports_outputs(tmp_path: Path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("1", execution_count=1)]
    notebooks.set_bootstrap(nb)
    nbformat.write(nb, tmp_path / "dirty.ipynb")
    assert notebooks.main(["check", str(tmp_path)]) == 1
    assert "dirty.ipynb: has outputs" in capsys.readouterr().out


# --- table of contents and config ------------------------------------------------------


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                files += _toc_files(child)
    return files


def _resolve(entry: str) -> Path | None:
    base = ROOT / entry
    for candidate in (base, *(base.with_name(base.name + ext) for ext in (".md", ".ipynb"))):
        if candidate.is_file():
            return candidate
    return None


def test_toc_entries_exist():
    toc = _load_yaml("_toc.yml")
    assert toc["format"] == "jb-book" and toc["root"] == "book/intro"
    missing = [f for f in _toc_files(toc) if _resolve(f) is None]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_book_page_is_in_the_toc():
    listed = {_resolve(f) for f in _toc_files(_load_yaml("_toc.yml"))}
    pages = [
        p for p in BOOK.rglob("*")
        if p.suffix in {".md", ".ipynb"} and not {"_build", ".ipynb_checkpoints"} & set(p.parts)
    ]
    # a fragment named _*.md is not a page: it must be {include}d by a page that is listed
    included = {(page.parent / m).resolve() for page in listed if page.suffix == ".md"
                for m in re.findall(r"```\{include\}\s+(\S+)", page.read_text(encoding="utf-8"))}
    orphans = [str(p.relative_to(ROOT)) for p in pages
               if p not in listed and not (p.name.startswith("_") and p.resolve() in included)]
    assert not orphans, f"pages under book/ missing from _toc.yml (or fragments no page includes): {orphans}"


def test_config_has_required_keys():
    cfg = _load_yaml("_config.yml")
    assert cfg["only_build_toc_files"] is True
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert cfg["execute"]["allow_errors"] is False
    assert cfg["repository"]["url"] == notebooks.repository_url()
    assert cfg["repository"]["branch"] == "main"
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert "sphinx_exercise" in cfg["sphinx"]["extra_extensions"]
    assert cfg["bibtex_bibfiles"] == ["references.bib"]
    excluded = set(cfg["exclude_patterns"])
    assert {"skiplib", "tests", "_build", ".venv", "results"} <= excluded


def test_repository_url_written_once():
    url = notebooks.repository_url()
    tracked = [ROOT / name for name in ("pyproject.toml", "README.md", "Makefile", "environment.yml")]
    tracked += [p for p in (ROOT / "skiplib").rglob("*.py")]
    tracked += [p for p in BOOK.rglob("*.md")]
    repeats = [str(p.relative_to(ROOT)) for p in tracked if p.is_file() and url in p.read_text(encoding="utf-8")]
    assert not repeats, f"the repository URL belongs in _config.yml only; also found in {repeats}"


# --- citations -------------------------------------------------------------------------

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def _bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "references.bib").read_text(encoding="utf-8"), re.M))


def _book_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join(c.source for c in notebooks.read(path).cells if c.cell_type == "markdown")
    return path.read_text(encoding="utf-8")


def test_cited_keys_exist():
    keys = _bib_keys()
    pages = [p for p in BOOK.rglob("*") if p.suffix in {".md", ".ipynb"} and "_build" not in p.parts]
    cited = {
        (p.name, key.strip())
        for p in pages
        for group in CITE.findall(_book_text(p))
        for key in group.split(",")
    }
    unknown = sorted(f"{name}: {key}" for name, key in cited if key not in keys)
    assert not unknown, f"cited but not in references.bib: {unknown}"
    assert cited, "the book cites nothing"


def test_bibliography_parses_and_has_course_keys():
    pybtex = pytest.importorskip("pybtex.database", reason="pybtex comes with the [book] extra")
    data = pybtex.parse_file(str(ROOT / "references.bib"))
    required = {
        "he2016deep", "he2016identity", "srivastava2015highway", "srivastava2015training",
        "huang2017densely", "ronneberger2015unet", "li2018visualizing", "veit2016residual",
        "balduzzi2017shattered", "goyal2017accurate", "pleiss2017memory",
    }
    assert required <= set(data.entries)
    for key, entry in data.entries.items():
        assert entry.fields.get("title") and entry.fields.get("year"), key
        assert entry.persons.get("author"), key


# --- CI and README ---------------------------------------------------------------------


def test_ci_script_runs_the_readme_commands():
    ci = ROOT / ".ci" / "run"
    assert ci.stat().st_mode & stat.S_IXUSR, ".ci/run must be executable"
    text = ci.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    commands = [line.strip() for line in text.splitlines()]
    test_at = next(i for i, line in enumerate(commands) if re.match(r"(run\s+)?make test\b", line))
    book_at = next(i for i, line in enumerate(commands) if re.match(r"(run\s+)?make book\b", line))
    assert test_at < book_at


def test_readme_gives_both_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make book" in readme
    assert "SKIPLIB_PROFILE" in readme and "SKIPLIB_DATA" in readme


def test_test_command_runs_in_the_smoke_profile():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"SKIPLIB_PROFILE=smoke \$\(PY\) -m pytest --nbval-lax", makefile)


# The GitHub Pages workflow's actions, each at least at this major version: the current ones (2026),
# which run on Node.js 24 (GitHub removes Node.js 20 from its runners). An action not listed here
# fails the test until it is added with its current major version.
PAGES_ACTIONS = {
    "actions/checkout": 6,
    "actions/setup-python": 6,
    "actions/setup-node": 6,
    "actions/cache": 6,
    "actions/upload-artifact": 7,
    "actions/upload-pages-artifact": 5,
    "actions/deploy-pages": 5,
}
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def _pages_workflow() -> dict:
    return _load_yaml(".github/workflows/pages.yml")


def test_pages_workflow_uses_current_action_versions():
    steps = [step for job in _pages_workflow()["jobs"].values() for step in job["steps"]]
    uses = [step["uses"] for step in steps if "uses" in step]
    assert uses, "the Pages workflow uses no actions"
    for use in uses:
        action, _, ref = use.partition("@")
        assert action in PAGES_ACTIONS, f"{use}: add {action} to PAGES_ACTIONS with its current major version"
        m = re.fullmatch(r"v(\d+)(?:\.\d+)*", ref)
        assert m, f"{use}: refer to a release tag vN"
        assert int(m.group(1)) >= PAGES_ACTIONS[action], f"{use}: older than {action}@v{PAGES_ACTIONS[action]}"
    assert {"actions/upload-pages-artifact", "actions/deploy-pages"} <= {u.partition("@")[0] for u in uses}


def _build_steps() -> list[dict]:
    return _pages_workflow()["jobs"]["build"]["steps"]


def _first(steps: list[dict], predicate) -> int:
    return next((i for i, step in enumerate(steps) if predicate(step)), -1)


def test_pages_workflow_installs_the_cpu_build_of_torch_first():
    steps = _build_steps()
    at = _first(steps, lambda s: CPU_TORCH_INDEX in s.get("run", ""))
    assert at >= 0, f"the workflow must install torch from {CPU_TORCH_INDEX} (the runner has no GPU)"
    run = steps[at]["run"]
    install = next(line for line in run.splitlines() if CPU_TORCH_INDEX in line)
    assert re.search(r"--index-url\s+" + re.escape(CPU_TORCH_INDEX), install), install
    assert " torch " in f" {install} " and "torchvision" in install, install
    assert ".venv" in install, "torch must go into .venv, where make installs skiplib"
    first_make = _first(steps, lambda s: "make " in s.get("run", ""))
    assert 0 <= at < first_make, "the CPU build of torch must be installed before the first make step"


def test_pages_workflow_caches_the_execution_cache():
    steps = _build_steps()
    at = _first(steps, lambda s: s.get("uses", "").startswith("actions/cache@")
                and "_build/.jupyter_cache" in str(s.get("with", {}).get("path", "")))
    assert at >= 0, "the workflow must restore and save _build/.jupyter_cache with actions/cache"
    cache = steps[at]["with"]
    paths = str(cache["path"]).split()
    # without the Makefile's record of the profile and skiplib, make book empties the restored cache
    assert {"_build/.jupyter_cache", "_build/.skiplib-cache-key"} <= set(paths), paths
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "CACHE_KEY_FILE := _build/.skiplib-cache-key" in makefile
    key = str(cache["key"])
    assert "hashFiles(" in key and "book/**/*.ipynb" in key and "skiplib/**" in key, key
    assert "SKIPLIB_PROFILE" in key, key
    book_at = _first(steps, lambda s: "make book" in s.get("run", ""))
    assert 0 <= at < book_at, "the execution cache must be restored before make book"
