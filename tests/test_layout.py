"""The package layout holds: imports flow one way, tools stay on top, modules stay small.

``skiplib`` is one room per concept, and the rooms are stacked (``skiplib/__init__.py`` draws
the stack): a module may import its own layer and the layers below, never one above. The
checker below reads every ``skiplib/**/*.py`` with ``ast`` (module-level and function-level
imports, relative ones resolved), so a lazy import inside a function cannot hide a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from _paths import ROOT

PACKAGE = ROOT / "skiplib"
MAX_LINES = 350

# Lowest first. A module belongs to the layer of the longest entry that is its name or a package
# above it; the bare package ``skiplib`` matches only its own __init__ (never as a prefix), so a
# new top-level module that nobody placed fails `test_every_module_has_a_layer` instead of
# silently joining layer 0.
LAYERS: list[tuple[str, ...]] = [
    ("skiplib", "skiplib.profile", "skiplib.checks", "skiplib.glue"),
    ("skiplib.data",),
    ("skiplib.blocks",),
    ("skiplib.models",),
    ("skiplib.train", "skiplib.results"),
    ("skiplib.analysis", "skiplib.plots", "skiplib.diagrams"),
    ("skiplib.chapters", "skiplib.exercises"),
    ("skiplib.cli", "skiplib.__main__"),
    ("skiplib.tools",),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> int | None:
    """The layer of ``module`` (a dotted name inside skiplib), or None if the table has no place for it."""
    if module == "skiplib":
        return 0
    parts = module.split(".")
    for n in range(len(parts), 1, -1):  # longest prefix first, never the bare "skiplib"
        if (layer := LAYER_OF.get(".".join(parts[:n]))) is not None:
            return layer
    return None


def describe(module: str) -> str:
    layer = layer_of(module)
    return f"{module} (layer {layer}: {', '.join(n.removeprefix('skiplib.') for n in LAYERS[layer])})"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def skiplib_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


KNOWN_MODULES = {module_name(p) for p in skiplib_files()}


@dataclass(frozen=True)
class Import:
    line: int
    statement: str  # as written, for the failure message
    target: str  # the skiplib module it loads, resolved


def imports_of(source: str, module: str, is_package: bool = False, known: set[str] = KNOWN_MODULES) -> list[Import]:
    """Every import of a skiplib module in ``source`` (the text of ``module``), at any depth.

    ``from pkg import name`` counts as an import of ``pkg.name`` where that is a module (``from
    skiplib import tools`` loads the tools package), else of ``pkg``. ``importlib.import_module``
    with a literal absolute name counts too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, f"import {a.name}", a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level - 1 >= len(base_parts):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(base_parts[:len(base_parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            written = f"from {'.' * node.level}{node.module or ''} import "
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append(Import(node.lineno, written + a.name, sub if sub in known else base))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            found.append(Import(node.lineno, f"import_module({node.args[0].value!r})", node.args[0].value))
    return sorted((i for i in found if i.target == "skiplib" or i.target.startswith("skiplib.")), key=lambda i: i.line)


def layer_violations(source: str, module: str, path: str, is_package: bool = False,
                     known: set[str] = KNOWN_MODULES) -> list[str]:
    """One line per import of ``module`` that reaches a higher layer than its own."""
    own = layer_of(module)
    out = []
    for imp in imports_of(source, module, is_package, known):
        target = layer_of(imp.target)
        if own is not None and target is not None and target > own:
            out.append(f"{path}:{imp.line}: `{imp.statement}` imports {describe(imp.target)} "
                       f"from {describe(module)}, a lower layer")
    return out


def _parsed():
    for path in skiplib_files():
        rel = str(path.relative_to(ROOT))
        yield path, rel, module_name(path), path.read_text(encoding="utf-8")


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in KNOWN_MODULES if layer_of(m) is None)
    assert not unplaced, f"modules without a layer in tests/test_layout.py's LAYERS: {unplaced}: add each to the stack"


def test_imports_flow_one_way():
    violations = []
    for path, rel, module, source in _parsed():
        violations += layer_violations(source, module, rel, is_package=path.name == "__init__.py")
    assert not violations, "imports against the layering (lowest first: " + " < ".join(
        "/".join(n.removeprefix("skiplib.") for n in names) for names in LAYERS) + "):\n" + "\n".join(violations)


def test_the_checker_catches_a_backward_import():
    fake = "skiplib.data.fake"
    # a function-level import of a higher layer, absolute and relative, is caught with its line
    source = ("from skiplib.profile import get_profile\n"
              "from . import loader\n"
              "\n"
              "def build():\n"
              "    from skiplib.models import create_model\n"
              "    from ..train import loop\n"
              "    import skiplib.tools.site\n"
              "    return create_model\n")
    found = layer_violations(source, fake, "skiplib/data/fake.py")
    assert [v.split(":")[1] for v in found] == ["5", "6", "7"], found
    assert "`from skiplib.models import create_model` imports skiplib.models (layer 3: models)" in found[0]
    assert "from skiplib.data.fake (layer 1: data)" in found[0]
    assert "imports skiplib.train.loop (layer 4" in found[1]  # `..train` resolved from skiplib.data
    assert "skiplib.tools.site (layer 8: tools)" in found[2]
    # the same and lower layers are allowed; `from skiplib import tools` is an import of the package tools
    assert layer_violations("from skiplib import __version__\nfrom skiplib.data import cifar\n", fake, "f.py") == []
    assert len(layer_violations("from skiplib import tools\n", "skiplib.cli", "f.py")) == 1
    # a package's own relative imports resolve from the package, not from its parent
    assert [i.target for i in imports_of("from .cifar import x\n", "skiplib.data", is_package=True)] == [
        "skiplib.data.cifar"]
    with pytest.raises(ValueError, match="beyond the top-level package"):
        imports_of("from ... import x\n", "skiplib.data.cifar")


def test_course_code_never_imports_tools():
    offenders = []
    for path, rel, module, source in _parsed():
        if module == "skiplib.tools" or module.startswith("skiplib.tools."):
            continue
        offenders += [f"{rel}:{i.line}: `{i.statement}`" for i in imports_of(source, module, path.name == "__init__.py")
                      if i.target == "skiplib.tools" or i.target.startswith("skiplib.tools.")]
    assert not offenders, "skiplib.tools is book tooling, never imported by the course code:\n" + "\n".join(offenders)


def test_no_module_is_too_long():
    long = {rel: n for path, rel, _, source in _parsed() if (n := len(source.splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): " + ", ".join(
        f"{rel} ({n} lines)" for rel, n in sorted(long.items(), key=lambda kv: -kv[1]))


def _module_level(body: list[ast.stmt]):
    """The module's own statements, also those inside if/try/with blocks, but not inside defs or classes."""
    for node in body:
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _module_level([n for n in getattr(node, field, []) if isinstance(n, (ast.stmt,
                                                                                                ast.excepthandler))])


def _defines_getattr(node: ast.AST) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name == "__getattr__"
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return any(isinstance(t, ast.Name) and t.id == "__getattr__" for t in targets)


def test_no_module_level_getattr():
    found = [f"{rel}:{node.lineno}" for _, rel, _, source in _parsed()
             for node in _module_level(ast.parse(source).body) if _defines_getattr(node)]
    assert not found, f"module-level __getattr__ (import the names plainly instead): {found}"


def test_the_getattr_check_sees_nested_definitions():
    source = "try:\n    pass\nexcept ImportError:\n    def __getattr__(name):\n        raise AttributeError(name)\n"
    assert [n.lineno for n in _module_level(ast.parse(source).body) if _defines_getattr(n)] == [4]
    method = "class A:\n    def __getattr__(self, name):\n        return 1\n"
    assert not any(_defines_getattr(n) for n in _module_level(ast.parse(method).body))


def test_every_subpackage_has_a_documented_init():
    folders = sorted({p.parent for p in skiplib_files()})
    problems = []
    for folder in folders:
        init = folder / "__init__.py"
        rel = str(init.relative_to(ROOT))
        if not init.is_file():
            problems.append(f"{rel} is missing")
        elif not ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))):
            problems.append(f"{rel} has no docstring saying what the package holds")
    assert not problems, "\n".join(problems)
