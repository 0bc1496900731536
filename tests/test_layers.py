"""The package's shape: layers that import only downwards, a torch-only nn, small modules."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
#: Bottom to top, as lib/__init__.py draws them; the modules at the package's top sit with cli.
LAYERS = ("data", "nn", "training", "evaluation", "recipes", "study", "cli")
#: What nn may import besides itself and the standard library: a loss-only user has just these.
NN_PACKAGES = {"torch", "numpy"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Functions exempt from the length limit: argparse tables read best whole.
LONG_TABLES = {"build_parser"}


#: The package's own __init__: only its version, which every layer may read.
ROOT_NAMES = {"aclaudio", "aclaudio.__version__"}


def layer_of(module: str) -> int:
    """The layer index of a dotted module name inside aclaudio: the modules at the package's
    top (losses, export, hear) share cli's."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS) - 1


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(["aclaudio", *(p for p in parts if p != "__init__")])


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None or module == "aclaudio":  # from x import submodule
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def violations(root: Path) -> list[str]:
    """Every import that climbs a layer, and every import of nn outside torch and numpy."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        level = layer_of(here)
        for line, name in imports(path, root):
            where = f"{path.relative_to(root)}:{line}"
            if name in ROOT_NAMES:
                continue
            if name.partition(".")[0] == "aclaudio":
                if layer_of(name) > level:
                    problems.append(f"{where}: {here} ({LAYERS[level]}) imports {name} above it")
                elif level == LAYERS.index("nn") and layer_of(name) != level:
                    problems.append(f"{where}: nn imports {name} (nothing else of aclaudio)")
            elif level == LAYERS.index("nn"):
                top = name.partition(".")[0]
                if top not in NN_PACKAGES and top not in sys.stdlib_module_names:
                    problems.append(f"{where}: nn imports {name} (torch and numpy only)")
    return problems


def test_imports_only_go_down():
    assert violations(LIB) == []


def test_a_climbing_import_is_caught(tmp_path):
    """The checker itself: an upward import, relative or absolute, and pandas or data in nn."""
    for layer in ("data", "nn", "study"):
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "data" / "low.py").write_text("from ..study import grids\n")
    (tmp_path / "nn" / "net.py").write_text("import pandas\nfrom aclaudio.data import low\n")
    (tmp_path / "study" / "grids.py").write_text("from aclaudio.nn import net\n")
    found = violations(tmp_path)
    assert len(found) == 3, found
    assert "data/low.py:1: aclaudio.data.low (data) imports aclaudio.study above it" in found[0]
    assert "nn/net.py:1: nn imports pandas" in found[1]
    assert "nn/net.py:2: nn imports aclaudio.data (nothing else of aclaudio)" in found[2]


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")), ids=lambda p: str(p.relative_to(LIB)))
def test_modules_and_functions_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if node.name not in LONG_TABLES:
                assert length <= MAX_FUNCTION_LINES, f"{node.name}: {length} lines"


def test_every_subpackage_is_installed():
    """pyproject names each package (lib/ is installed as aclaudio): one left out would be
    missing after `pip install .`, while the editable checkout still finds it."""
    listed = set(
        tomllib.loads((LIB.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {module_name(init, LIB) for init in LIB.rglob("__init__.py")}
    assert listed == found | {"aclaudio.encoders"}  # data only (the shipped encoder)
