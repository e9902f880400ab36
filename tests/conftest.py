"""Shared fixtures: where the read-only test data in ../shared/data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Return the shared test-data folder (``BRAINSCALE_TEST_DATA`` or ../shared/data)."""
    env = os.environ.get("BRAINSCALE_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; skips the test with a reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path} (set BRAINSCALE_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def ds_real_mini(shared_data: Path) -> Path:
    """The real MRI acquisitions of ds-real-mini."""
    path = shared_data / "ds-real-mini"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def bids_examples(shared_data: Path) -> Path:
    """The bids-examples layouts (0-byte images)."""
    path = shared_data / "bids-examples"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def combat_reference(shared_data: Path) -> Path:
    """The ComBatHarmonization reference inputs and outputs."""
    path = shared_data / "combat-reference"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path
