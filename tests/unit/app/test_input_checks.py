"""Pre-graph input checks: no false alarm on real acquisitions, every corruption caught."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from brainscale.bids_app import bids_index, subject_data
from brainscale.bids_app.input_checks import (
    check_input_files,
    find_malformed_sidecars,
    gradient_problem,
    image_problem,
    sidecar_problems,
)


@pytest.mark.realdata
def test_real_acquisitions_pass_every_check(ds_real_mini):
    """ds-real-mini (0.7 and 2 mm T1w, multiband BOLD, AP/PA DWI, field map) is usable."""
    layout = bids_index.load_layout(ds_real_mini, validate=False)
    for subject in ("01", "02", "03"):
        data = subject_data.collect_subject_data(layout, subject)
        assert check_input_files(data, ("anat", "func", "dwi")) == [], subject
    for fmap in sorted((ds_real_mini / "sub-02" / "fmap").glob("*.nii.gz")):
        assert image_problem(str(fmap), 3) is None, fmap
    assert find_malformed_sidecars(ds_real_mini) == {}


def _save(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), path)
    return str(path)


def test_each_corruption_is_named(tmp_path):
    rng = np.random.default_rng(0)
    good = _save(tmp_path / "good.nii.gz", rng.random((8, 8, 8, 3)))
    assert image_problem(good, 4) is None
    assert "expected a 3D image" in image_problem(good, 3)
    nan = rng.random((8, 8, 8))
    nan[1, 2, 3] = np.inf
    assert "NaN or infinite" in image_problem(_save(tmp_path / "inf.nii.gz", nan), 3)
    assert "constant" in image_problem(_save(tmp_path / "c.nii.gz", np.ones((8, 8, 8))), 3)
    raw = (tmp_path / "good.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[:-40])
    assert "truncated or corrupt" in image_problem(str(tmp_path / "cut.nii.gz"), 4)
    uncompressed = _save(tmp_path / "plain.nii", rng.random((8, 8, 8)))
    with open(uncompressed, "r+b") as handle:
        handle.truncate(352 + 100)
    assert "the file has" in image_problem(uncompressed, 3)
    header = nib.Nifti1Header()
    header.set_data_shape((20000, 20000, 20000))
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    assert "implausible dimensions" in image_problem(str(tmp_path / "huge.nii.gz"), 3)
    header.set_data_shape((1000, 1000, 1000))
    (tmp_path / "big.nii.gz").write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    assert "impossible in a" in image_problem(str(tmp_path / "big.nii.gz"), 3)
    img = nib.Nifti1Image(rng.random((8, 8, 8)).astype(np.float32), np.eye(4))
    img.header.set_zooms((1.0, 500.0, 1.0))  # nibabel itself repairs 0 to 1
    nib.save(img, tmp_path / "zoom.nii.gz")
    assert "voxel sizes" in image_problem(str(tmp_path / "zoom.nii.gz"), 3)


def test_gradient_tables_must_match_the_volumes(tmp_path):
    dwi = _save(tmp_path / "dwi.nii.gz", np.random.default_rng(1).random((4, 4, 4, 3)))
    bval, bvec = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    bval.write_text("0 1000 1000\n")
    bvec.write_text("0 1 0\n0 0 1\n0 0 0\n")
    assert gradient_problem(dwi, str(bval), str(bvec)) is None
    bval.write_text("0 1000\n")
    assert "2 b-values for 3 volumes" in gradient_problem(dwi, str(bval), str(bvec))
    bval.write_text("0 1000 1000\n")
    bvec.write_text("0 1 0\n0 0 1\n")
    assert "expected 3 rows" in gradient_problem(dwi, str(bval), str(bvec))
    bvec.write_text("0 1 x\n0 0 1\n0 0 0\n")
    assert "cannot be read as numbers" in gradient_problem(dwi, str(bval), str(bvec))


def test_malformed_sidecars_are_charged_to_who_inherits_them(tmp_path):
    (tmp_path / "sub-01" / "func").mkdir(parents=True)
    (tmp_path / "sub-02" / "anat").mkdir(parents=True)
    (tmp_path / "sub-01" / "func" / "sub-01_task-rest_bold.json").write_text("{")
    (tmp_path / "task-rest_bold.json").write_text('{"RepetitionTime": }')
    (tmp_path / "sub-02" / "anat" / "sub-02_T1w.json").write_text("{}")
    (tmp_path / "derivatives").mkdir()
    (tmp_path / "derivatives" / "x.json").write_text("{")  # not indexed: not checked
    bad = find_malformed_sidecars(tmp_path)
    assert sorted(p.name for p in bad) == ["sub-01_task-rest_bold.json", "task-rest_bold.json"]
    assert len(sidecar_problems(bad, tmp_path, "01")) == 2
    assert [line.split(":")[0].rsplit("/", 1)[-1]
            for line in sidecar_problems(bad, tmp_path, "02")] == ["task-rest_bold.json"]
