"""environment.yml (conda) and pyproject.toml (pip) must install the same packages with the same
version ranges, and the same Python; environment.yml is parsed by hand so no YAML library is
needed. The ranges admit Colab's preinstalled versions (constraints/colab.txt), and dev.py's
checks agree with them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def environment_lists() -> tuple[list[str], list[str]]:
    """(conda dependencies, pip dependencies) of environment.yml, as written."""
    conda, pip, section = [], [], None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        text = line.split("#", 1)[0].rstrip()
        if not text:
            continue
        indent, item = len(text) - len(text.lstrip()), text.strip()
        if indent == 0:
            section = "conda" if item == "dependencies:" else None
        elif item == "- pip:":
            section = "pip"
        elif item.startswith("- ") and section == "pip" and indent > 4:
            pip.append(item[2:].strip())
        elif item.startswith("- ") and section in ("conda", "pip"):
            section = "conda"
            conda.append(item[2:].strip())
    return conda, pip


def by_name(requirements: list[str]) -> dict[str, SpecifierSet]:
    parsed = [Requirement(text) for text in requirements]
    names = [requirement.name.lower() for requirement in parsed]
    assert len(names) == len(set(names)), f"a package is listed twice: {sorted(names)}"
    return {requirement.name.lower(): requirement.specifier for requirement in parsed}


def test_environment_parser_reads_both_lists():
    conda, pip = environment_lists()
    assert "pip" in conda and any(item.startswith("python") for item in conda)
    assert "-e ." in pip and any(item.startswith("tensorflow") for item in pip)


def test_pip_section_matches_pyproject():
    project = pyproject()["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    expected = by_name(requirements)
    _, pip = environment_lists()
    assert "-e ." in pip  # installs the package itself
    listed = by_name([item for item in pip if item != "-e ."])
    assert listed == expected
    for requirement in requirements:
        assert requirement in pip  # written identically, not just equivalent


def test_conda_python_matches_requires_python():
    conda, _ = environment_lists()
    pythons = [item for item in conda if item.startswith("python")]
    assert len(pythons) == 1
    spec = SpecifierSet(pythons[0][len("python") :])
    assert spec == SpecifierSet(pyproject()["project"]["requires-python"])


def colab_pins() -> dict[str, str]:
    lines = (ROOT / "constraints" / "colab.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in pins}


def load_dev():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dependency_admits_colabs_preinstalled_version():
    pins = colab_pins()
    for requirement in map(Requirement, pyproject()["project"]["dependencies"]):
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in constraints/colab.txt: rerun its tool"
        assert Version(pins[name]) in requirement.specifier, (name, pins[name])


def test_supported_pythons_are_3_10_to_3_13_everywhere():
    supported = SpecifierSet(pyproject()["project"]["requires-python"])
    assert [f"3.{minor}" in supported for minor in range(9, 15)] == [False, *[True] * 4, False]
    assert load_dev().PYTHONS == ((3, 10), (3, 13))
    assert "Python 3.10-3.13" in (ROOT / "README.md").read_text()


def test_the_colab_check_counts_changed_and_removed_packages_not_added_ones():
    changed_versions = load_dev().changed_versions
    before = {"keras": "3.13.2", "numpy": "2.1.3", "tqdm": "4.67.3"}
    after = {"keras": "3.15.1", "numpy": "2.1.3", "pspseg": "0.2.0"}
    expected = {"keras": ("3.13.2", "3.15.1"), "tqdm": ("4.67.3", None)}
    assert changed_versions(before, after) == expected
