"""What `pip install .` ships: every package of the source tree and every data file it reads.

`pyproject.toml` names the packages one by one (the source folders map to several roots), so a
new subpackage or data file left out of it would import in the checkout and be missing from the
wheel. This holds the list to the tree.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
ROOTS = {"": ROOT / "src", **{k: ROOT / v for k, v in CONFIG["package-dir"].items() if k}}


def package_dir(name: str) -> Path:
    for prefix, folder in sorted(ROOTS.items(), key=lambda kv: -len(kv[0])):
        if prefix and (name == prefix or name.startswith(f"{prefix}.")):
            return folder.joinpath(*name.split(".")[1:])
    return ROOTS[""].joinpath(*name.split("."))


def source_packages() -> set[str]:
    found = set()
    for init in (ROOT / "src").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT / "src").parts))
    for init in (ROOT / "simulators").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_every_source_package_is_shipped() -> None:
    assert source_packages() - set(CONFIG["packages"]) == set()


def test_every_listed_package_exists() -> None:
    missing = [name for name in CONFIG["packages"] if not package_dir(name).is_dir()]
    assert missing == []


def test_every_data_file_is_shipped() -> None:
    data = CONFIG["package-data"]
    unshipped = []
    for pattern in ("*.toml", "*.json", "*.sql"):
        for path in (ROOT / "src").rglob(pattern):
            package = ".".join(path.parent.relative_to(ROOT / "src").parts)
            while package and package not in CONFIG["packages"]:
                package = package.rpartition(".")[0]
            rel = path.relative_to(package_dir(package)).as_posix()
            if not any(fnmatch.fnmatch(rel, p) for p in data.get(package, [])):
                unshipped.append(rel)
    assert unshipped == []
