"""The install files agree: environment.yml with pyproject.toml, and the constraints/ files with both.

Conda is not installed where the tests run, so these are static checks of the files: every package
the pip side needs (pyproject.toml's dependencies and extras) is in environment.yml under its
conda-forge name, with the same version constraints, and nothing else is; constraints/min-versions.txt
pins each runtime dependency to pyproject's minimum; constraints/book.txt pins the book toolchain and
the Makefile installs with it.
"""

from __future__ import annotations

import re
import stat
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from _paths import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on Python 3.10 (pyproject.toml)
    import tomli as tomllib

# conda-forge package name -> the PyPI distribution it stands for, where the two names differ.
CONDA_TO_PYPI = {
    # PyTorch's conda-forge package is named after the project, its wheel after the module.
    "pytorch": "torch",
    # The Python bindings of Playwright (`import playwright`); see WRONG_CONDA_NAMES.
    "playwright-python": "playwright",
}
# conda-forge packages whose name is a PyPI name of ours but which are something else.
WRONG_CONDA_NAMES = {
    "playwright": "conda-forge's playwright is the Node.js tool, not the Python package: use playwright-python",
}
# What environment.yml needs for the environment itself, which pyproject.toml cannot list.
CONDA_ONLY = {
    "python": "the interpreter",
    "pip": "installs the pip: section",
    # npm: skiplib.tools.site fetches the website's offline MathJax, require.js and widget manager
    # with `npm pack` during make book (without it the pages fall back to CDN links).
    "nodejs": "npm, for the website's offline assets",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def pip_requirements(project: dict) -> dict[str, SpecifierSet]:
    """pyproject's runtime dependencies and every extra (tools, test, book, site; dev is their
    union), by canonical name; the extras' references to skiplib itself are skipped."""
    lists = [project["dependencies"], *project.get("optional-dependencies", {}).values()]
    reqs: dict[str, SpecifierSet] = {}
    for line in (item for group in lists for item in group):
        req = Requirement(line)
        if canonicalize_name(req.name) != "skiplib":
            reqs[canonicalize_name(req.name)] = req.specifier
    return reqs


def conda_requirements(env: dict) -> tuple[dict[str, SpecifierSet], dict[str, SpecifierSet], list[str]]:
    """environment.yml's conda packages (as PyPI names, CONDA_ONLY left out) and its pip: section,
    by canonical name, and the conda names that are wrong."""
    conda: dict[str, SpecifierSet] = {}
    pip: dict[str, SpecifierSet] = {}
    wrong: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-") or line.strip() == ".":  # -e . (skiplib itself), pip options
                    continue
                req = Requirement(line)
                pip[canonicalize_name(req.name)] = req.specifier
            continue
        # conda match specs: "name", "name>=1.0", "name>=1.0,<2", with an optional "channel::".
        m = re.fullmatch(r"(?:[\w.-]+::)?([A-Za-z0-9_.-]+)\s*(.*)", str(dep).strip())
        assert m, f"environment.yml: cannot parse the conda dependency {dep!r}"
        name = m.group(1).lower()
        if name in WRONG_CONDA_NAMES:
            wrong.append(f"{name}: {WRONG_CONDA_NAMES[name]}")
        if name in CONDA_ONLY:
            continue
        conda[canonicalize_name(CONDA_TO_PYPI.get(name, name))] = SpecifierSet(m.group(2).replace(" ", ""))
    return conda, pip, wrong


def mismatches(project: dict, env: dict) -> list[str]:
    """Every way environment.yml disagrees with pyproject.toml, each as a sentence; [] if none."""
    wanted = pip_requirements(project)
    conda, pip, wrong = conda_requirements(env)
    problems = list(wrong)
    both = sorted(set(conda) & set(pip))
    if both:
        problems.append(f"in both the conda list and the pip: section: {both}")
    have = {**conda, **pip}
    missing = sorted(set(wanted) - set(have))
    if missing:
        problems.append(f"in pyproject.toml but not in environment.yml: {missing} (add them under their "
                        "conda-forge names, or to the pip: section; a conda name that differs goes in CONDA_TO_PYPI)")
    extra = sorted(set(have) - set(wanted))
    if extra:
        problems.append(f"in environment.yml but not in pyproject.toml: {extra} (a conda name that differs from "
                        "the PyPI one belongs in CONDA_TO_PYPI, a conda-only package in CONDA_ONLY)")
    differ = {n: (str(wanted[n]), str(have[n])) for n in sorted(set(wanted) & set(have)) if wanted[n] != have[n]}
    if differ:
        problems.append(f"version constraints differ (pyproject.toml, environment.yml): {differ}")
    return problems


# --- environment.yml ---------------------------------------------------------------------


def test_environment_yml_matches_pyproject():
    problems = mismatches(_pyproject()["project"], _environment())
    assert not problems, "environment.yml vs pyproject.toml:\n" + "\n".join(problems)


def test_a_dependency_added_only_to_pyproject_is_caught():
    project = _pyproject()["project"]
    project["optional-dependencies"]["book"].append("sphinx-new-thing>=1")
    project["dependencies"].append("einops")
    problems = mismatches(project, _environment())
    assert any("sphinx-new-thing" in p and "einops" in p and "not in environment.yml" in p for p in problems), problems


def test_a_changed_minimum_is_caught():
    project = _pyproject()["project"]
    project["dependencies"] = [re.sub(r"^torch>=[\d.]+", "torch>=9.9", d) for d in project["dependencies"]]
    assert any("'torch': ('>=9.9'" in p for p in mismatches(project, _environment()))


def test_the_node_playwright_package_is_caught():
    env = _environment()
    env["dependencies"] = ["playwright" if d == "playwright-python" else d for d in env["dependencies"]]
    assert env != _environment(), "environment.yml should list playwright-python"
    problems = mismatches(_pyproject()["project"], env)
    assert any(p.startswith("playwright: ") and "playwright-python" in p for p in problems), problems


def test_environment_yml_has_node_for_the_offline_site_assets():
    names = [str(d).split(">")[0].split("=")[0].strip() for d in _environment()["dependencies"] if not isinstance(d, dict)]
    assert "nodejs" in names, "environment.yml needs nodejs: make book fetches the site's offline assets with npm"
    assert "npm" in (ROOT / "skiplib" / "tools" / "site.py").read_text(encoding="utf-8")


def test_environment_yml_installs_skiplib_itself():
    pip = next(d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e") and line.split()[-1].startswith(".") for line in pip)


def test_environment_yml_uses_conda_forge():
    assert _environment()["channels"] == ["conda-forge"]


# --- constraints/min-versions.txt: the minimums `make min-versions` tests -----------------


def _constraints(name: str) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    for number, raw in enumerate((ROOT / "constraints" / name).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
            f"constraints/{name}:{number}: pin one exact version (name==X.Y.Z), got {line!r}")
        key = canonicalize_name(req.name)
        assert key not in reqs, f"constraints/{name}:{number}: {req.name} is pinned twice"
        reqs[key] = req
    return reqs


def _pinned(req: Requirement) -> Version:
    return Version(next(iter(req.specifier)).version)


def test_min_versions_pin_exactly_the_minimums_pyproject_states():
    runtime = {canonicalize_name(Requirement(d).name): Requirement(d) for d in _pyproject()["project"]["dependencies"]}
    pins = _constraints("min-versions.txt")
    assert sorted(pins) == sorted(runtime), (
        f"constraints/min-versions.txt must pin every runtime dependency and nothing else: "
        f"missing {sorted(set(runtime) - set(pins))}, extra {sorted(set(pins) - set(runtime))}")
    for name, req in runtime.items():
        lower = [s for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"pyproject.toml: give {name} its minimum version (>=X), got {req}"
        assert _pinned(pins[name]) == Version(lower[0].version), (
            f"{name}: pyproject.toml says {req.specifier}, constraints/min-versions.txt pins {pins[name].specifier}")


def test_min_versions_check_is_wired_up():
    script = ROOT / ".ci" / "min-versions"
    assert script.stat().st_mode & stat.S_IXUSR, ".ci/min-versions must be executable"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "constraints/min-versions.txt" in text and "-m venv" in text
    assert "--ignore=tests/book" in text and "not book and not colab and not site" in text
    assert "SKIPLIB_PROFILE=smoke" in text
    assert re.search(r"^min-versions:.*\n\t\.ci/min-versions\b", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert "make min-versions" in (ROOT / "README.md").read_text(encoding="utf-8")


# --- constraints/book.txt: the book toolchain the Makefile installs -----------------------

BOOK_TOOLCHAIN = {
    "jupyter-book", "myst-nb", "myst-parser", "sphinx", "docutils", "sphinx-book-theme", "pydata-sphinx-theme",
    "sphinx-exercise", "sphinxcontrib-bibtex", "jupyter-cache", "nbval", "nbclient", "nbformat", "jupytext",
}


def test_book_constraints_pin_the_toolchain():
    pins = _constraints("book.txt")
    assert BOOK_TOOLCHAIN <= set(pins), f"constraints/book.txt does not pin {sorted(BOOK_TOOLCHAIN - set(pins))}"
    # torch: the CPU or CUDA build, and the minimum, are the installer's choice (pyproject, min-versions.txt)
    assert not {"torch", "torchvision"} & set(pins), "constraints/book.txt must not pin torch or torchvision"


def test_book_constraints_satisfy_pyproject():
    pins, wanted = _constraints("book.txt"), pip_requirements(_pyproject()["project"])
    clash = {n: (str(wanted[n]), str(_pinned(r))) for n, r in pins.items()
             if n in wanted and not wanted[n].contains(_pinned(r), prereleases=True)}
    assert not clash, f"constraints/book.txt pins versions pyproject.toml excludes (pyproject, pin): {clash}"


def _make_variables(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", text, re.M))


def _expand(line: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)


@pytest.fixture(scope="module")
def makefile() -> tuple[str, dict[str, str]]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return text, _make_variables(text)


def test_makefile_installs_with_the_book_constraints(makefile):
    text, variables = makefile
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "Makefile: no $(STAMP) rule"
    installs = [_expand(line, variables) for line in recipe.group(1).splitlines() if "pip install -e" in line
                or re.search(r"pip install .*-e ", line)]
    assert installs and all("-c constraints/book.txt" in line for line in installs), (
        f"the Makefile's install of skiplib must use -c constraints/book.txt: {installs}")


def test_makefile_stamp_depends_on_the_book_constraints(makefile):
    text, variables = makefile
    rule = re.search(r"^\$\(STAMP\):(.*)$", text, re.M)
    assert rule, "Makefile: no $(STAMP) rule"
    prerequisites = _expand(rule.group(1), variables).split()
    assert {"pyproject.toml", "constraints/book.txt"} <= set(prerequisites), (
        f"the install stamp must be redone when pyproject.toml or constraints/book.txt changes: {prerequisites}")
