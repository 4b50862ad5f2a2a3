#!/usr/bin/env python3
"""Set up the course's virtual environment and run its jobs; needs only Python 3.10-3.13.

    python3 dev.py course   # install, then run the five lessons: data, train, predict, evaluate
    python3 dev.py test     # install, then ruff, the whole test suite, and the fast tests on JAX
                            # (CI runs it, then colab)
    python3 dev.py colab    # a replica of Colab's runtime: the install changes none of its
                            # packages, and the lessons and fast tests pass there

`test` and `course` use `.venv/`, reinstalled only when pyproject.toml or the version changes.
`colab` uses `.venv-colab/` on Python 3.13 (this interpreter, pyenv's, or `python3.13` on the
PATH), built from constraints/colab.txt and rebuilt only when that file changes.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".pspseg-installed"
PYTHONS = ((3, 10), (3, 13))  # oldest and newest supported, as pyproject's requires-python
COLAB_VENV = ROOT / ".venv-colab"
COLAB_CONSTRAINTS = ROOT / "constraints" / "colab.txt"
COLAB_PYTHON = "3.13"  # constraints/colab.txt's header names Colab's exact Python


def run(*command: str | Path, env: dict | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, env=env)


def ensure_environment() -> None:
    """Create `.venv` and install the package with its dev extras, once per pyproject version."""
    if not PYTHONS[0] <= sys.version_info[:2] <= PYTHONS[1]:
        sys.exit(f"Python 3.10-3.13 is needed; this is {sys.version.split()[0]}.")
    # pyproject.toml, and the package's version, which it reads from __init__.py.
    sources = [ROOT / "pyproject.toml", ROOT / "pspseg_utils" / "__init__.py"]
    wanted = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists() and not (BIN / "python.exe").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = BIN / "python"
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def course(lessons: list[str]) -> None:
    """The course end to end on the embedded default: the five lessons (or those whose names
    start with one of `lessons`, e.g. "03"), executed in order in the `cpu` profile (lesson 1
    generates the synthetic data, 3 trains, 4 predicts, 5 evaluates)."""
    env = dict(os.environ, PSPSEG_QUICK="0")
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    chosen = [n for n in notebooks if not lessons or n.name.startswith(tuple(lessons))]
    if not chosen:
        sys.exit(f"No lesson starts with {' or '.join(lessons)}: {[n.stem for n in notebooks]}")
    for notebook in chosen:
        run(
            BIN / "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            "--ExecutePreprocessor.timeout=1800",
            notebook,
            env=env,
        )
        clean_metadata(notebook)
    print("Done. Open the lessons with: .venv/bin/jupyter lab notebooks/")


def clean_metadata(notebook: Path) -> None:
    """Drop execution timestamps so that re-running a lesson changes only its outputs."""
    content = json.loads(notebook.read_text())
    for cell in content["cells"]:
        cell.get("metadata", {}).pop("execution", None)
    content["metadata"].pop("widgets", None)
    notebook.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")


def test() -> None:
    run(BIN / "ruff", "check", ".")
    env = dict(os.environ, PSPSEG_QUICK="1")
    # Unit tests and the five notebooks (in the quick profile) in one pytest run.
    run(
        BIN / "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "tests",
        "notebooks",
        env=env,
    )
    # The fast tests again on JAX: the model, training with its resume and time budget,
    # inference and evaluation run on every Keras backend (the lessons use tf.data: TensorFlow).
    jax = dict(env, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    run(BIN / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        "tests", env=jax)  # fmt: skip


def colab_python() -> str:
    """A Python 3.13 interpreter, Colab's minor version: this one, pyenv's, or python3.13."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == COLAB_PYTHON:
        return sys.executable
    pyenv = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{COLAB_PYTHON}.*/bin/python3")))
    for candidate in [*reversed(pyenv), shutil.which(f"python{COLAB_PYTHON}")]:
        # A pyenv shim exists whether or not its version is active: ask it.
        if candidate and subprocess.run([candidate, "-V"], capture_output=True).returncode == 0:
            return candidate
    sys.exit(f"dev.py colab needs Python {COLAB_PYTHON} (Colab's): install it, e.g. by pyenv.")


def freeze(python: Path) -> dict[str, str]:
    """{lower-case name: version} of what `python`'s environment holds."""
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    return {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(listed)}


def changed_versions(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple]:
    """{name: (version before, version after or None)} of the packages `after` changed or
    removed; packages it added are not changes."""
    return {name: (v, after.get(name)) for name, v in before.items() if after.get(name) != v}


def setup_cell_source() -> str:
    """The requirement the notebooks' Setup cell installs on Colab, read from lesson 1."""
    cells = json.loads((ROOT / "notebooks" / "01_data.ipynb").read_text())["cells"]
    found = re.search(r'^SOURCE = "(pspseg @ git\+[^"]+)"$', "".join(cells[2]["source"]), re.M)
    if found is None:
        sys.exit("The Setup cell of notebooks/01_data.ipynb installs no `pspseg @ git+...`.")
    return found.group(1)


def colab() -> None:
    """Replay the Colab Setup cell on a replica of Colab's runtime and run the course there.

    The replica holds exactly the versions in constraints/colab.txt. The Setup cell's own pip
    command runs, its git source pointed at this checkout; every package the replica held must
    keep its version. Then the five lessons (quick profile) and the fast tests run there."""
    bin_dir = COLAB_VENV / "bin"
    stamp = COLAB_VENV / ".colab-constraints"
    wanted = hashlib.sha256(COLAB_CONSTRAINTS.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == wanted):
        shutil.rmtree(COLAB_VENV, ignore_errors=True)
        run(colab_python(), "-m", "venv", COLAB_VENV)
        run(bin_dir / "python", "-m", "pip", "install", "--quiet", "-r", COLAB_CONSTRAINTS)
        stamp.write_text(wanted)
    python = bin_dir / "python"
    run(python, "-m", "pip", "uninstall", "--quiet", "--yes", "pspseg", "nbval")
    before = freeze(python)
    source = setup_cell_source()
    local = re.sub(r"git\+\S+", ROOT.as_uri(), source)
    print(f"The Setup cell installs {source!r}; here: {local!r}")
    run(python, "-m", "pip", "install", "-q", local)
    after = freeze(python)
    changed = changed_versions(before, after)
    if changed:
        sys.exit(f"Installing pspseg changed Colab's packages (before, after): {changed}")
    added = sorted(set(after) - set(before))
    print(f"Installing pspseg kept all {len(before)} packages of the replica; added {added}.")
    # nbval runs the notebooks; Colab lacks it, and the constraints keep it from moving the rest.
    run(python, "-m", "pip", "install", "--quiet", "-c", COLAB_CONSTRAINTS, "nbval>=0.11,<1")
    # Colab's ipykernel 6.17 on Python 3.13 warns about frozen modules at every kernel start.
    env = dict(os.environ, PSPSEG_QUICK="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        "--nbval-lax", "tests", "notebooks", env=env)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "job", choices=["course", "test", "colab"], help="what to run after setting up"
    )
    parser.add_argument(
        "lessons", nargs="*", help="course only: the lessons to run, e.g. 03 (default: all five)"
    )
    args = parser.parse_args()
    if args.lessons and args.job != "course":
        parser.error(f"lessons are for `course` only, got {args.lessons} with {args.job!r}")
    try:
        if args.job == "colab":
            colab()
        elif args.job == "course":
            ensure_environment()
            course(args.lessons)
        else:
            ensure_environment()
            test()
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)


if __name__ == "__main__":
    main()
