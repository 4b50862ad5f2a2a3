"""The package's imports flow one way: data -> config -> models -> losses/metrics -> training ->
inference -> evaluation -> cli, with keras_segmentation's API on top, so each layer can be read,
tested and changed without the ones above it. Function-level imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pspseg_utils"

# Each top-level module or sub-package, by layer; a module may import its own layer and below.
LAYERS = [
    {"rules", "recipes", "runlock", "synthetic"},
    {"data"},
    {"config"},
    {"models"},
    {"losses", "metrics"},
    {"training"},
    {"inference"},
    {"evaluation", "export", "visualize"},
    {"course", "cli", "__main__"},
    {"keras_segmentation"},
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    """The top-level module or sub-package a file belongs to: models/pspnet.py -> "models"."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


# Inside a sub-package, its modules' own order (a module may import those before it).
INNER_ORDER = {
    "data": ["files", "layout", "split", "pipeline", "sources"],
    "training": ["hardware", "schedule", "checkpoints", "callbacks", "feeding", "run"],
}


def _imported_units(path: Path) -> set[str]:
    """The pspseg_utils units a file imports, wherever in the file the import sits."""
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "pspseg_utils":
                units |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            units |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("pspseg_utils.")}  # fmt: skip
    return units - {"__version__"}


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_unit_has_a_layer():
    assert {_unit(p) for p in FILES} == set(LAYER_OF)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_down_the_layers_only(path):
    own = _unit(path)
    above = sorted(u for u in _imported_units(path) if LAYER_OF[u] > LAYER_OF[own])
    assert above == [], f"{path.relative_to(PACKAGE)} ({own}) imports {above} from above it"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from pspseg_utils.training import train\n")
    assert _imported_units(source) == {"training"}


@pytest.mark.parametrize("package", sorted(INNER_ORDER))
def test_inside_a_subpackage_imports_flow_one_way_too(package):
    order = INNER_ORDER[package]
    assert sorted(order) == sorted(p.stem for p in (PACKAGE / package).glob("[!_]*.py"))
    prefix = f"pspseg_utils.{package}."
    for rank, module in enumerate(order):
        tree = ast.parse((PACKAGE / package / f"{module}.py").read_text())
        modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported = {m.removeprefix(prefix) for m in modules if m.startswith(prefix)}
        after = sorted(m for m in imported if order.index(m) >= rank)
        assert after == [], f"{package}/{module}.py imports {after}, which come after it"
