"""Shared fixtures: where the read-only test data in ../shared/data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# ANTs/ITK is bit-reproducible only single-threaded (a multi-threaded metric sums in an
# order that depends on scheduling: two 2-thread runs of one seeded registration differ);
# the suite runs ITK with one thread, the condition the README states for identical bytes.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")


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


_ALLOWED_SKIPS = ("CUDA", "GPU")
"""Skip reasons that stay skips under ``BRAINSCALE_FAIL_ON_SKIP`` (no GPU in CI)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Turn a skip into a failure when ``BRAINSCALE_FAIL_ON_SKIP=1`` (set by ``.ci/run``).

    CI installs Slurm and podman and has ``../shared/data`` beside the clone, so a
    real-parts or real-data test that skips there means a broken delivery path, not a
    missing tool; only skips for a missing GPU are allowed.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("BRAINSCALE_FAIL_ON_SKIP") != "1" or not report.skipped:
        return
    if hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if any(word in reason for word in _ALLOWED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped where BRAINSCALE_FAIL_ON_SKIP=1 forbids it: {reason}"
