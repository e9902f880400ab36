"""Command line: exit codes, aliases, config-file round trip, array indices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from brainscale import __version__
from brainscale.bids_app.cli import parse_args
from brainscale.bids_app.config import Config
from brainscale.bids_app.run import main
from brainscale.errors import ExitCode, UnknownAnalysisLevelError, UsageError

REPO = Path(__file__).resolve().parents[3]


def test_version_via_run_py_script():
    result = subprocess.run([sys.executable, str(REPO / "run.py"), "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"BrainScale {__version__}"


def test_help_lists_every_documented_option(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--participant_label", "--participant-label", "--session-label",
                   "--skip_bids_validator", "--skip-bids-validator", "--skip-bids-validation",
                   "--bids-filter-file", "--work-dir", "--nprocs", "--omp-nthreads", "--mem-gb",
                   "--use-plugin", "--stop-on-first-crash", "--config-file", "--modalities",
                   "--atlas", "--output-spaces", "--reports-only", "--seed", "--array-index"):
        assert option in text, option


def test_unknown_analysis_level_is_17(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out"), "session"]) == ExitCode.UNKNOWN_ANALYSIS_LEVEL
    assert "unknown analysis level 'session'" in capsys.readouterr().err


@pytest.mark.parametrize("label", ["../x", "*", "01/..", "a b", "sub-"])
def test_unsafe_participant_label_is_usage_error(tmp_path, label, capsys):
    code = main([str(tmp_path), str(tmp_path / "out"), "participant", "--participant-label", label])
    assert code == ExitCode.USAGE
    assert "invalid sub label" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_option_is_usage_error_not_argparse_2(tmp_path):
    assert main([str(tmp_path), str(tmp_path / "o"), "participant", "--frobnicate"]) == 64


def test_labels_with_or_without_prefix_and_aliases(tmp_path):
    a = parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                    "--participant_label", "sub-01", "02", "--skip_bids_validator"], environ={})
    b = parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                    "--participant-label", "01", "sub-02", "--skip-bids-validation"], environ={})
    assert a == b
    assert a.execution.participant_label == ("01", "02")
    assert a.execution.skip_bids_validation is True


def test_config_file_round_trip_and_command_line_override(tmp_path):
    first = parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--nprocs", "3",
                        "--modalities", "anat", "dwi", "--seed", "7", "--target", "none"],
                       environ={})
    path = tmp_path / "config.toml"
    path.write_text(first.to_toml())
    assert Config.from_toml(path.read_text()) == first
    second = parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                         "--config-file", str(path), "--seed", "9"], environ={})
    assert second.nipype.nprocs == 3
    assert second.workflow.modalities == ("anat", "dwi")
    assert second.workflow.seed == 9
    assert second.group.target == "none"


def test_config_file_with_unknown_option_is_rejected(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[workflow]\nmodalites = ['anat']\n")
    with pytest.raises(UsageError, match="modalites"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--config-file", str(path)],
                   environ={})


@pytest.mark.parametrize("variable", ["SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX"])
def test_array_index_from_scheduler_environment(tmp_path, variable):
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "participant"], environ={variable: "2"})
    assert config.execution.array_index == 2
    explicit = parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--array-index", "0"],
                          environ={variable: "2"})
    assert explicit.execution.array_index == 0


def test_unknown_level_raises_before_anything_else(tmp_path):
    with pytest.raises(UnknownAnalysisLevelError):
        parse_args([str(tmp_path), str(tmp_path / "o"), "Participant"], environ={})
