"""PEP 561: both packages ship a ``py.typed`` marker, so type checkers read their annotations."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_markers_ship_as_package_data():
    assert (ROOT / "igpo_env" / "py.typed").is_file() and (ROOT / "agents" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["*"]
