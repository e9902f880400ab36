"""Configuration: validation of values and the TOML written to logs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainscale.bids_app.config import Config, write_config
from brainscale.errors import UsageError


def test_defaults_round_trip_through_toml(tmp_path):
    config = Config().replace(execution={"bids_dir": tmp_path, "output_dir": tmp_path / "o"})
    path = write_config(config, tmp_path / "logs", "20260101-000000_abcd")
    assert path.name == "config-20260101-000000_abcd.toml"
    assert Config.from_toml(path.read_text()) == config
    assert Config.from_toml(path.read_text()).execution.bids_dir == Path(tmp_path)


@pytest.mark.parametrize("section,values,match", [
    ("workflow", {"modalities": ["anat", "pet"]}, "modalities"),
    ("workflow", {"output_spaces": ["fsaverage"]}, "output-spaces"),
    ("workflow", {"denoise_strategy": "magic"}, "denoise"),
    ("nipype", {"nprocs": -1}, "nprocs"),
])
def test_invalid_values_name_the_option(section, values, match):
    with pytest.raises(UsageError, match=match):
        Config().replace(**{section: values})


def test_invalid_toml_names_the_file():
    with pytest.raises(UsageError, match="my.toml"):
        Config.from_toml("[workflow\n", source="my.toml")
