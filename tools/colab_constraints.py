"""Write constraints/colab.txt: Colab's pinned versions of the packages the course touches.

    python3.13 tools/colab_constraints.py pip-freeze.gpu.txt --source "backend-info@a724079 ..."

FREEZE is Colab's `pip freeze` (the public googlecolab/backend-info repository keeps it as
pip-freeze.gpu.txt). pip's resolver, asked for pspseg's dependencies and the notebook kernel
with every Colab version as a constraint, names the packages these need, directly or not; the
output pins those of them that Colab has, at Colab's versions. Run it with Colab's Python
(major.minor), since dependencies differ by Python version. Needs the package index.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# What else the course meets on Colab: the notebook kernel, pytest (for nbval) and the second
# OpenCV wheel (Colab has both; each provides cv2, so pspseg must accept Colab's version).
KERNEL = ["ipykernel", "ipython", "jupyter_client", "nbformat", "nbclient", "pytest"]
ALSO = ["opencv-python"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(freeze: str) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines of a pip freeze; direct references
    (`name @ url`) cannot be constraints and are left out, as are local versions (`+cu128`)."""
    pins = {}
    for line in freeze.splitlines():
        match = PIN.match(line.strip())
        if match and "+" not in match.group(2):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def needed(pins: dict[str, str], requirements: list[str]) -> dict[str, str]:
    """The packages pip would install for `requirements` with `pins` as constraints."""
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{name}=={v}\n" for name, v in pins.items()))
        report = Path(scratch) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
             "--report", str(report), "-c", str(constraints), *requirements],
            check=True,
        )  # fmt: skip
        items = json.loads(report.read_text())["install"]
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("freeze", type=Path, help="Colab's pip freeze (pip-freeze.gpu.txt)")
    parser.add_argument("--source", required=True, help="where and when FREEZE was taken")
    parser.add_argument("--out", type=Path, default=ROOT / "constraints" / "colab.txt")
    args = parser.parse_args()
    pins = read_pins(args.freeze.read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    resolved = needed(pins, [*project["dependencies"], *KERNEL, *ALSO])
    kept = {name: pins[name] for name in sorted(resolved) if name in pins}
    header = [
        "# Colab's GPU runtime, as the course meets it: the version Colab preinstalls of every",
        "# package that pspseg, the notebook kernel and pytest need, directly or not, and OpenCV.",
        f"# Source: {args.source}",
        f"# Written by tools/colab_constraints.py on Python {sys.version.split()[0]}: "
        f"{len(kept)} of the runtime's {len(pins)} pinned packages.",
        "# `python3 dev.py colab` builds a replica from it; see README, Run on Colab.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + [f"{n}=={v}" for n, v in kept.items()]) + "\n")
    print(f"Wrote {args.out}: {len(kept)} packages.")


if __name__ == "__main__":
    main()
