"""The one place that resolves and runs ``sql/<name>.sql`` with bound parameters.

SQL is code kept in files: every statement the project runs against DuckDB is
loaded here by name and executed with named parameters (``$name``), so no query
is ever assembled from user-supplied strings.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

import duckdb


def _sql_dir() -> Path:
    """``$RECSYS_SQL_DIR`` if set, else the installed package ``recsys._sql``.

    The files live in ``sql/`` at the top of the repository; packaging maps that folder to
    ``recsys._sql`` (pyproject.toml), so editable and regular installs both find them.
    """
    override = os.environ.get("RECSYS_SQL_DIR")
    return Path(override) if override else Path(str(importlib.resources.files("recsys._sql")))


SQL_DIR = _sql_dir()


@functools.cache
def load(name: str) -> str:
    """Return the text of ``sql/<name>.sql``; raises if there is no such file."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file named {name!r} in {SQL_DIR}")
    return path.read_text()


def names() -> list[str]:
    """All SQL file names, for tests that run every file."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def _bound(text: str, params: dict[str, Any]) -> dict[str, Any]:
    # Only the parameters the statement references are passed, so callers can
    # hand over a whole config without caring which keys a file uses.
    return {k: v for k, v in params.items() if re.search(rf"\${k}\b", text)}


def run(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyConnection:
    """Execute the statement(s) in ``sql/<name>.sql`` with named parameters."""
    text = load(name)
    used = _bound(text, params)
    return con.execute(text, used) if used else con.execute(text)


def fetch_one(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> tuple | None:
    """First row of ``sql/<name>.sql``, reading the result to the end.

    DuckDB refuses further work on a connection whose last result was only partly fetched.
    """
    rows = run(con, name, **params).fetchall()
    return rows[0] if rows else None


def query(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """Run the single query in ``sql/<name>.sql`` and return it as a relation."""
    text = load(name)
    return con.sql(text, params=_bound(text, params) or None)


def connect(path: Path | str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open DuckDB with the session settings every query here assumes (UTC)."""
    if path is None:
        con = duckdb.connect()
    else:
        con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(load("macros"))
    return con
