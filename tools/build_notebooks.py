"""Build the lesson notebooks from their sources, notebooks/lessons/NN_name.py.

    python tools/build_notebooks.py            # writes notebooks/NN_name.ipynb
    python tools/build_notebooks.py --check    # exit 1 where a notebook or a source is stale

A source is a jupytext "py:percent" file that ruff lints: `# %% [markdown]` opens a markdown
cell (its lines commented out), `# %%` a code cell. Edit a lesson there, build, then execute the
lessons that changed (`python3 dev.py course 03`). A code cell whose source is unchanged keeps
its committed outputs (cells are matched by position); a changed or new one has none until then.
Notebook metadata (kernelspec, Colab) stays as the committed notebook has it.

Every lesson opens alike: a title cell with a Colab badge (`course.REPO_URL` at the release tag,
`course.RELEASE_TAG`), then "## Setup", the Setup cell that installs this release on Colab,
"## Configuration" and the Configuration cell. The badge and those four cells are made here, in
one place, and the build copies them into every source, where ruff lints them as the notebooks
run them: edit them here, not in a lesson. `--check` and tests/test_notebooks.py fail when a
source's copy is stale (say, after the version was raised: build again).

An exercise's solution is a code cell tagged `solution` (`# %% tags=["solution"]`): the build
hides its code in the notebook (JupyterLab and Colab show it on a click), and the lessons'
tests execute it like any other cell, so the solutions keep working.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import jupytext
import nbformat

from pspseg_utils import __version__
from pspseg_utils.course import INSTALL_SOURCE, RELEASE_TAG, REPO_URL

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = NOTEBOOKS / "lessons"
SLUG = REPO_URL.removeprefix("https://github.com/")
METADATA = {  # a new lesson's; a committed notebook keeps its own
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
}

SETUP = f"""\
# On Colab (or Kaggle) install the course package, once, leaving the runtime's packages as they
# are; locally `python3 dev.py course` installed it.
import importlib.metadata
import os
import subprocess
import sys

RELEASE = "{__version__}"  # the release of the course these lessons belong to
SOURCE = "{INSTALL_SOURCE}"
try:
    INSTALLED = importlib.metadata.version("pspseg")
except importlib.metadata.PackageNotFoundError:
    INSTALLED = None
if INSTALLED == RELEASE:
    print(f"pspseg {{RELEASE}} is installed: nothing to do.")
elif "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    print(f"Installing pspseg {{RELEASE}} and only what this runtime lacks (about a minute) ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", SOURCE], check=True)
elif INSTALLED is None:
    raise ModuleNotFoundError("pspseg is missing: run `python3 dev.py course` first")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up log quiet
from pspseg_utils import course

course.setup_notebook()  # imports TensorFlow quietly, prints versions and the GPU

import matplotlib.pyplot as plt
import numpy as np

import pspseg_utils as ps
from pspseg_utils import data, visualize"""

CONFIGURATION = """\
PROFILE = course.resolve_profile("auto")  # "quick" | "cpu" | "gpu"; auto: PSPSEG_QUICK=1 -> quick
ROOT = course.project_root()
DATA_DIR = None  # a kaggle_3m folder; None: $PSPSEG_DATA_DIR, else Kaggle, else synthetic data
USE_DRIVE = False  # on Colab: True mounts Google Drive and keeps run folders there
RUN_DIR = course.runs_dir(use_drive=USE_DRIVE) / f"course-{PROFILE}"  # lesson 03's model
CONFIG = course.train_config(PROFILE)
SEED = 0

DATA_DIR, SOURCE = data.resolve_data_dir(
    DATA_DIR, synthetic_dir=ROOT / "data" / "synthetic", download=PROFILE != "quick"
)
CREDIT = course.data_credit(SOURCE)  # printed under every figure that shows a scan
print(f"Profile {PROFILE!r}: {CONFIG.backbone} at {CONFIG.image_size} px; data: {SOURCE}, in "
      f"{os.path.relpath(DATA_DIR, ROOT)}; runs in {os.path.relpath(RUN_DIR, ROOT)}")"""

OPENING = [  # every lesson's cells 1-4, after its title
    ("markdown", "## Setup"),
    ("code", SETUP),
    (
        "markdown",
        """## Configuration

One switch, `PROFILE`: `quick` runs in seconds (tests set `PSPSEG_QUICK=1`), `cpu` trains a
small model in minutes, `gpu` uses real data at full size with mixed precision. Point `DATA_DIR`
at the Kaggle data to use real scans.""",
    ),
    ("code", CONFIGURATION),
]


def badge(name: str) -> str:
    url = (
        f"https://colab.research.google.com/github/{SLUG}/blob/{RELEASE_TAG}/notebooks/{name}.ipynb"
    )
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def lessons() -> list[str]:
    return sorted(path.stem for path in SOURCES.glob("[0-9]*.py"))


Cell = tuple  # (cell type, source, tags): tags such as nbval's "nbval-check-output", or ()


def _cells_of(notebook: nbformat.NotebookNode) -> list[Cell]:
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in notebook.cells]


def read_source(name: str) -> list[Cell]:
    """The cells of notebooks/lessons/<name>.py as written, in order."""
    return _cells_of(jupytext.reads((SOURCES / f"{name}.py").read_text(), fmt="py:percent"))


def lesson_cells(name: str) -> list[Cell]:
    """The lesson's cells: its source's, with the badge and the opening cells made here."""
    cells = read_source(name)
    kinds = [cell[0] for cell in cells[: len(OPENING) + 1]]
    title = cells[0][1] if cells else ""
    if kinds != ["markdown", *(kind for kind, _ in OPENING)] or not title.startswith("# "):
        raise ValueError(
            f"{SOURCES / name}.py must open with a title cell, then the cells {OPENING[0][1]!r}, "
            "Setup, '## Configuration ...' and Configuration (see tools/build_notebooks.py)"
        )
    title, found = re.subn(r"^\[!\[Open In Colab\]\(.*$", badge(name), title, flags=re.M)
    if found != 1:
        raise ValueError(f"{SOURCES / name}.py: its title cell needs one Colab badge line")
    opening = [(kind, text, ()) for kind, text in OPENING]
    return [("markdown", title, cells[0][2]), *opening, *cells[len(OPENING) + 1 :]]


def write_source(name: str, cells: list[Cell]) -> None:
    notebook = nbformat.v4.new_notebook(cells=[new_cell(*cell) for cell in cells])
    notebook.metadata["jupytext"] = {"notebook_metadata_filter": "-all"}
    notebook.metadata["jupytext"]["cell_metadata_filter"] = "tags,-all"
    (SOURCES / f"{name}.py").write_text(jupytext.writes(notebook, fmt="py:percent"))


HIDDEN = {"jupyter": {"source_hidden": True}, "cellView": "form"}  # JupyterLab's, Colab's


def new_cell(kind: str, text: str, tags: tuple = ()) -> nbformat.NotebookNode:
    """A cell; one tagged "solution" (an exercise's) opens with its code hidden: JupyterLab
    collapses it, Colab shows it as a form, and a click shows the code."""
    new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell = new(text)
    if tags:
        cell.metadata["tags"] = list(tags)
    if "solution" in tags:
        cell.metadata.update(copy.deepcopy(HIDDEN))
    return cell


def hides_its_code(cell: nbformat.NotebookNode) -> bool:
    metadata = cell.get("metadata", {})
    hidden = metadata.get("jupyter", {}).get("source_hidden") is True
    return hidden and metadata.get("cellView") == "form"


def notebook_cells(name: str) -> list[Cell]:
    """The cells of the committed notebooks/<name>.ipynb, in order."""
    return _cells_of(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4))


def build(name: str) -> nbformat.NotebookNode:
    """The notebook of lesson `name`, keeping what the committed one has of it: the outputs and
    execution count of each code cell whose source is unchanged, cell ids by position, and the
    notebook's metadata."""
    path = NOTEBOOKS / f"{name}.ipynb"
    old = nbformat.read(path, as_version=4) if path.exists() else None
    notebook = nbformat.v4.new_notebook(metadata=old.metadata if old else METADATA)
    for index, (kind, text, tags) in enumerate(lesson_cells(name)):
        cell = new_cell(kind, text, tags)
        before = old.cells[index] if old and index < len(old.cells) else None
        if before is not None and before.cell_type == kind:
            cell.id = before.get("id", cell.id)  # so that a diff shows the cell changed in place
            if before.source == text:
                cell.metadata = {**before.metadata, **cell.metadata}
                if not tags:
                    cell.metadata.pop("tags", None)  # the source's tags, not the old ones
                if "solution" not in tags:
                    for key in HIDDEN:
                        cell.metadata.pop(key, None)
                if kind == "code":
                    cell.outputs, cell.execution_count = before.outputs, before.execution_count
        notebook.cells.append(cell)
    return notebook


def stale(name: str) -> list[str]:
    """What is out of date for lesson `name`: its source's badge or opening cells, its notebook."""
    cells, problems = lesson_cells(name), []
    if read_source(name) != cells:
        problems.append(f"notebooks/lessons/{name}.py: its badge or opening cells are stale")
    if not (NOTEBOOKS / f"{name}.ipynb").exists():
        problems.append(f"notebooks/{name}.ipynb is missing")
    elif notebook_cells(name) != cells:
        problems.append(f"notebooks/{name}.ipynb: its cells differ from its source")
    else:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        shown = [
            cell
            for cell in notebook.cells
            if "solution" in cell.metadata.get("tags", ()) and not hides_its_code(cell)
        ]
        if shown:
            problems.append(f"notebooks/{name}.ipynb: {len(shown)} solution cell(s) not hidden")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    names = lessons()
    orphans = sorted({p.stem for p in NOTEBOOKS.glob("[0-9]*.ipynb")} - set(names))
    if args.check:
        problems = [problem for name in names for problem in stale(name)]
        problems += [f"notebooks/{name}.ipynb has no source in {SOURCES}" for name in orphans]
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("Run: python tools/build_notebooks.py", file=sys.stderr)
        return 1 if problems else 0
    for name in names:
        cells = lesson_cells(name)
        if read_source(name) != cells:
            write_source(name, cells)
            print(f"refreshed the badge and opening cells of notebooks/lessons/{name}.py")
        path = NOTEBOOKS / f"{name}.ipynb"
        text = nbformat.writes(build(name))
        if not path.exists() or path.read_text(encoding="utf-8") != text + "\n":
            path.write_text(text + "\n", encoding="utf-8")
            print(f"wrote notebooks/{name}.ipynb")
    for name in orphans:
        print(f"notebooks/{name}.ipynb has no source in {SOURCES}: left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
