"""The lessons' conventions: each notebook built from its source in notebooks/lessons/, title,
Colab badge from the one REPO_URL at the release tag, the same Setup cell installing that
release, a Configuration cell with the profile switch, short cells, clean committed outputs."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path

import pytest

from pspseg_utils import __version__
from pspseg_utils.course import INSTALL_SOURCE, RELEASE_TAG, REPO_URL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LESSONS = ["01_data", "02_architecture", "03_training", "04_inference", "05_evaluation"]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_five_lessons_exist():
    assert [p.stem for p in NOTEBOOKS] == LESSONS
    assert [p.stem for p in sorted((ROOT / "notebooks" / "lessons").glob("*.py"))] == LESSONS


@functools.cache
def _builder():
    spec = importlib.util.spec_from_file_location("build", ROOT / "tools" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_difference(found: list[tuple[str, str]], expected: list[tuple[str, str]]) -> str:
    for index, (cell, wanted) in enumerate(zip(found, expected, strict=False)):
        if cell != wanted:
            return f"cell {index} is {cell!r:.80}, its source {wanted!r:.80}"
    return f"{len(found)} cells, its source {len(expected)}"


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_is_built_from_its_source(name):
    pytest.importorskip("jupytext")  # a dev requirement, which the Colab replica lacks
    builder = _builder()
    cells = builder.lesson_cells(name)  # the source's, with the builder's badge and Setup
    written = builder.read_source(name)
    assert written == cells, "stale badge or opening cells: run python tools/build_notebooks.py"
    committed = builder.notebook_cells(name)
    difference = _first_difference(committed, cells)
    assert committed == cells, f"run python tools/build_notebooks.py: {difference}"


def test_a_rebuilt_source_keeps_its_cells_and_their_tags(tmp_path, monkeypatch):
    pytest.importorskip("jupytext")
    builder = _builder()
    cells = builder.read_source("02_architecture")
    assert ("nbval-check-output",) in [tags for _, _, tags in cells]
    monkeypatch.setattr(builder, "SOURCES", tmp_path)
    builder.write_source("02_architecture", cells)
    assert builder.read_source("02_architecture") == cells


@pytest.mark.parametrize("name", LESSONS)
def test_cell_tags_are_the_sources(name):
    """Cell tags (nbval's "nbval-check-output") are written in the source's `# %% tags=[...]`
    line, and the builder writes them into the notebook's cells."""
    jupytext = pytest.importorskip("jupytext")
    source = jupytext.read(ROOT / "notebooks" / "lessons" / f"{name}.py", fmt="py:percent")
    wanted = [cell.metadata.get("tags", []) for cell in source.cells]
    notebook = _cells(ROOT / "notebooks" / f"{name}.ipynb")
    found = [cell.get("metadata", {}).get("tags", []) for cell in notebook]
    assert found == wanted, f"notebooks/{name}.ipynb: set its cells' tags as its source has them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opening_title_badge_setup_configuration(path):
    cells = _cells(path)
    first = _source(cells[0])
    assert first.startswith("# ")
    slug = REPO_URL.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{slug}/blob/{RELEASE_TAG}/notebooks/"
    assert f"{badge}{path.name}" in first and "colab-badge.svg" in first
    assert "You will learn" in first
    assert _source(cells[1]) == "## Setup"
    setup = _source(cells[2])
    assert f'RELEASE = "{__version__}"' in setup and f'SOURCE = "{INSTALL_SOURCE}"' in setup
    assert _source(cells[3]).startswith("## Configuration")
    configuration = _source(cells[4])
    assert 'PROFILE = course.resolve_profile("auto")' in configuration
    assert re.search(r"^[A-Z_]+ = ", configuration, re.MULTILINE)


def test_setup_cell_is_identical_everywhere():
    setups = {_source(_cells(path)[2]) for path in NOTEBOOKS}
    assert len(setups) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_code_cell_is_longer_than_30_lines(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert len(_source(cell).splitlines()) <= 30, _source(cell)[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_clean(path):
    for cell in _cells(path):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"traceback committed in {path.name}"
            text = "".join(output.get("text", ""))
            for machine_path in (str(ROOT), "/root/", "/home/", "/tmp/"):
                assert machine_path not in text, f"machine path {machine_path} in {path.name}"
            assert "Traceback" not in text
            assert text.count("Warning") <= 2, f"a wall of warnings in {path.name}"
            shown = text + "".join(output.get("data", {}).get("text/plain", ""))
            assert not re.search(r"\| *\d+/\d+ \[", shown), f"a progress bar in {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_some_outputs_are_checked_by_nbval(path):
    """By the cell tag nbval-check-output, not by a test marker in the code students read."""
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    for cell in code:
        assert not re.search(r"^\s*#\s*(NBVAL|PYTEST_VALIDATE)_", _source(cell), re.MULTILINE)
    checked = [c for c in code if "nbval-check-output" in c.get("metadata", {}).get("tags", [])]
    if path.stem in ("02_architecture", "03_training"):
        assert checked


@pytest.mark.parametrize("name", LESSONS)
def test_exercises_have_hidden_solutions(name):
    """At least three "### Exercise N: ..." cells, each followed, before the next heading, by a
    code cell tagged "solution" that the notebook shows with its code hidden (CI executes it);
    the lesson closes with "## Check your understanding"."""
    cells = _cells(ROOT / "notebooks" / f"{name}.ipynb")
    headings = [
        index
        for index, cell in enumerate(cells)
        if cell["cell_type"] == "markdown" and re.search(r"^#+ ", _source(cell), re.MULTILINE)
    ]
    exercises = [i for i in headings if _source(cells[i]).startswith("### Exercise")]
    assert len(exercises) >= 3, f"notebooks/{name}.ipynb has {len(exercises)} exercises"
    for start in exercises:
        end = min([i for i in headings if i > start], default=len(cells))
        solutions = [
            cell for cell in cells[start + 1 : end]
            if cell["cell_type"] == "code" and "solution" in cell["metadata"].get("tags", [])
        ]  # fmt: skip
        title = _source(cells[start]).splitlines()[0]
        assert solutions, f"{name}: {title!r} has no code cell tagged solution"
        for cell in solutions:
            assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, title
            assert cell["metadata"].get("cellView") == "form", title
    last = [c for c in cells if c["cell_type"] == "markdown"][-1]
    assert _source(last).startswith("## Check your understanding"), f"{name}: its last words"
    questions = re.findall(r"^\d+\. |^- ", _source(last), re.MULTILINE)
    assert 4 <= len(questions) <= 6, f"{name}: {len(questions)} questions to check understanding"
