"""Shared fixtures. Tests that need ../shared/data read its path from MEDMM_SHARED_DATA
(set by .ci/run) and skip with a reason when it is unset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = os.environ.get("MEDMM_SHARED_DATA")
    if not root:
        pytest.skip("MEDMM_SHARED_DATA is not set (.ci/run sets it to ../shared/data)")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"MEDMM_SHARED_DATA={root} is not a directory")
    return path
