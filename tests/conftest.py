from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Paths


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path
