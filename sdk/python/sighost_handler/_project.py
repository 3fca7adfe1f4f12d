"""The handler's name: `[project] name` of its own pyproject.toml, the way the
Rust SDK takes CARGO_PKG_NAME. Default idempotency keys are derived from it,
so the build and the test harness must read it the same way."""

from __future__ import annotations

import tomllib
from pathlib import Path


def find_pyproject(start: Path) -> Path:
    """The nearest pyproject.toml in `start` (a file's directory) or above."""
    start = start.resolve()
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate / "pyproject.toml"
    raise FileNotFoundError(f"no pyproject.toml in {directory} or above it")


def project_name(start: Path) -> str:
    pyproject = find_pyproject(start)
    with pyproject.open("rb") as f:
        name = tomllib.load(f).get("project", {}).get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{pyproject} has no [project] name")
    return name
