"""Packaging: the version comes from git, the distribution ships what it declares."""

from __future__ import annotations

import subprocess
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.version import Version

import brainscale

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_pep440_and_not_static():
    version = Version(brainscale.__version__)
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert "setuptools_scm" in PYPROJECT["tool"]
    assert str(version) == distribution("brainscale").version


def test_version_tracks_the_git_commit():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tagged = subprocess.run(["git", "-C", str(ROOT), "describe", "--tags", "--exact-match"],
                            capture_output=True, text=True).returncode == 0
    version = Version(brainscale.__version__)
    if not tagged:
        # an untagged commit: a development or post release naming a commit hash
        assert version.is_devrelease or version.is_postrelease
        assert version.local is not None and version.local.startswith("g")


def test_declared_package_data_exists():
    package_data = PYPROJECT.get("tool", {}).get("setuptools", {}).get("package-data", {})
    for package, patterns in package_data.items():
        folder = ROOT / package.replace(".", "/")
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches no file"


def test_extras_name_installed_requirements():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) >= {"test", "aws"}
    for name, requirements in extras.items():
        assert requirements, f"extra {name!r} is empty"
