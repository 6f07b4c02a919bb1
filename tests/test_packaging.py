"""pyproject.toml ships every module and asset of the source tree.

The development install is editable, which imports straight from the checkout, so a package
missing from `[tool.setuptools] packages` only shows up once someone installs a built wheel.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dirs(table: dict) -> dict[str, Path]:
    """Every directory under a mapped source root that holds files, keyed by its dotted name."""
    found: dict[str, Path] = {}
    for name, rel in table["package-dir"].items():
        root = ROOT / rel
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(f.is_file() for f in folder.iterdir()):
                continue
            found[".".join((name, *folder.relative_to(root).parts))] = folder
    return found


def test_every_source_folder_is_a_listed_package():
    table = _setuptools_table()
    listed = set(table["packages"])
    missing = sorted(set(_package_dirs(table)) - listed)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"


def test_every_non_python_file_is_package_data():
    table = _setuptools_table()
    patterns = table.get("package-data", {})
    unshipped = []
    for dotted, folder in _package_dirs(table).items():
        for f in folder.iterdir():
            if f.is_file() and f.suffix != ".py":
                if not any(fnmatch.fnmatch(f.name, p) for p in patterns.get(dotted, [])):
                    unshipped.append(str(f.relative_to(ROOT)))
    assert not unshipped, f"not in [tool.setuptools.package-data]: {unshipped}"
    assert "nvs.assets" in patterns, "the demo weights must ship with the package"
