"""What the browser tests share (plain module: test modules and conftest files import it): Debian's chromium, its
arguments, where screenshots go.

Never `playwright install` (a browser download fails here): the system's chromium is used through `executable_path`.
Without chromium the tests are skipped locally, and fail under CI (CI=true), where `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_executable() -> str:
    """The system's chromium; skips the test without it (fails it under CI)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs it with apt in .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs these tests")
    return path
