import nibabel as nib
import numpy as np
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.func.reference import (
    compute_bold_mask,
    compute_boldref,
    detect_nonsteady_states,
    validate_bold,
)
from tests.unit.func.synthetic import moved_series


def _series(n_vols=40, n_bright=3, seed=0):
    vols, affine = moved_series(np.zeros((1, 6)))
    rng = np.random.default_rng(seed)
    data = np.repeat(vols, n_vols, axis=3) * (1 + 0.01 * rng.standard_normal(n_vols))
    data[..., :n_bright] *= np.linspace(1.8, 1.3, n_bright) if n_bright else 1
    return data.astype(np.float32), affine


@pytest.mark.parametrize("n_bright", [0, 1, 4])
def test_nonsteady_volumes_are_counted(n_bright):
    data, _ = _series(n_bright=n_bright)
    assert detect_nonsteady_states(data) == n_bright


def test_boldref_skips_nonsteady_volumes_and_mask_covers_brain():
    data, affine = _series(n_bright=3)
    ref = compute_boldref(data, 3)
    assert np.allclose(ref, np.median(data[..., 3:13], axis=3))
    mask = np.asarray(compute_bold_mask(nib.Nifti1Image(ref, affine)).dataobj) > 0
    truth, _ = moved_series(np.zeros((1, 6)))
    brain = truth[..., 0] > 0.3 * truth.max()
    overlap = 2 * (mask & brain).sum() / (mask.sum() + brain.sum())
    assert overlap > 0.8


def test_validate_bold_errors():
    img4d = nib.Nifti1Image(np.zeros((4, 4, 4, 5), np.float32), np.eye(4))
    assert validate_bold(img4d, {"RepetitionTime": 2}) == 2.0
    with pytest.raises(InputDataError, match="RepetitionTime"):
        validate_bold(img4d, {}, "sub-1_bold.nii.gz")
    with pytest.raises(InputDataError, match="4D"):
        validate_bold(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)),
                      {"RepetitionTime": 2}, "sub-1_bold.nii.gz")
    with pytest.raises(InputDataError, match="positive"):
        validate_bold(img4d, {"RepetitionTime": 0})


def test_bold_reference_interface_rejects_bad_runs(tmp_path, monkeypatch):
    from brainscale.workflows.func.interfaces import BoldReference

    monkeypatch.chdir(tmp_path)
    path3d = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.float32), np.eye(4)), path3d)
    with pytest.raises(InputDataError, match="sub-01_task-rest_bold.nii.gz.*4D"):
        BoldReference(bold_file=str(path3d), metadata={"RepetitionTime": 2.0}).run()
    path4d = tmp_path / "sub-02_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4, 5), np.float32), np.eye(4)), path4d)
    with pytest.raises(InputDataError, match="sub-02_task-rest_bold.nii.gz.*SliceTiming"):
        BoldReference(bold_file=str(path4d),
                      metadata={"RepetitionTime": 2.0, "SliceTiming": [0, 0.5, 1.0]}).run()
