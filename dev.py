#!/usr/bin/env python3
"""Set up the course's virtual environment and run its two jobs; needs only Python 3.10+.

    python3 dev.py course   # install, then run the five lessons: data, train, predict, evaluate
    python3 dev.py test     # install, then ruff and the whole test suite (what CI runs)

The environment lives in `.venv/` and is reinstalled only when pyproject.toml changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".pspseg-installed"


def run(*command: str | Path, env: dict | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, env=env)


def ensure_environment() -> None:
    """Create `.venv` and install the package with its dev extras, once per pyproject version."""
    if not (3, 10) <= sys.version_info[:2] <= (3, 12):
        sys.exit(f"Python 3.10-3.12 is needed; this is {sys.version.split()[0]}.")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists() and not (BIN / "python.exe").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = BIN / "python"
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def course() -> None:
    """The course end to end on the embedded default: the five lessons, executed in order in the
    `cpu` profile (lesson 1 generates the synthetic data, 3 trains, 4 predicts, 5 evaluates)."""
    env = dict(os.environ, PSPSEG_QUICK="0")
    for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("job", choices=["course", "test"], help="what to run after setting up")
    job = parser.parse_args().job
    ensure_environment()
    try:
        {"course": course, "test": test}[job]()
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)


if __name__ == "__main__":
    main()
