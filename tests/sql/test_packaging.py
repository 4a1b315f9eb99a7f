"""The SQL files ship inside the package, so an installed copy runs without the source tree."""

import importlib.resources
import tomllib
from pathlib import Path

from recsys import sql

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    folders = {".".join(p.parent.relative_to(ROOT).parts)
               for top in ("recsys", "flows") for p in (ROOT / top).rglob("*.py")}
    assert {"recsys", "recsys.data", "flows"} <= folders
    assert set(_setuptools()["packages"]) == folders | {"recsys._sql"}


def test_sql_folder_ships_as_recsys_sql():
    cfg = _setuptools()
    assert cfg["package-dir"] == {"recsys._sql": "sql"}
    assert cfg["package-data"]["recsys._sql"] == ["*.sql"]
    shipped = importlib.resources.files("recsys._sql")
    names = sorted(p.stem for p in (ROOT / "sql").glob("*.sql"))
    assert len(names) > 30 and sql.names() == names
    assert all(shipped.joinpath(f"{n}.sql").read_text() == sql.load(n) for n in names)
