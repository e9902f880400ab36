import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import compute_regressor

from brainscale.errors import InputDataError
from brainscale.workflows.func.glm import condition_label, fit_first_level, read_events
from brainscale.workflows.func.motion import MOTION_COLUMNS


def test_planted_activation_is_detected(tmp_path):
    """Voxels carrying the HRF-convolved 'faces' blocks get high z; others do not."""
    tr, n_vols = 2.0, 120
    onsets = np.arange(10, 230, 40.0)
    events = pd.DataFrame({"onset": np.r_[onsets, onsets + 20], "duration": 10.0,
                           "trial_type": ["faces"] * len(onsets) + ["houses"] * len(onsets)})
    frame_times = (np.arange(n_vols) + 0.5) * tr
    faces = compute_regressor(np.vstack([onsets, np.full_like(onsets, 10.0),
                                         np.ones_like(onsets)]), "glover", frame_times)[0][:, 0]
    rng = np.random.default_rng(0)
    data = 1000 + 5 * rng.standard_normal((8, 8, 8, n_vols))
    active = np.zeros((8, 8, 8), bool)
    active[2:4, 2:4, 2:4] = True
    data[active] += 20 * faces
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold = nib.Nifti1Image(data.astype(np.float32), affine)
    mask = nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), affine)
    confounds = pd.DataFrame(0.01 * rng.standard_normal((n_vols, 6)), columns=MOTION_COLUMNS)
    zmaps = fit_first_level(bold, mask, events, confounds, tr, n_nonsteady=2,
                            smoothing_fwhm=None)
    assert set(zmaps) == {"Faces", "Houses"}
    zfaces = zmaps["Faces"].get_fdata()
    assert zfaces[active].min() > 5
    assert np.abs(zfaces[~active]).max() < 4.5
    assert np.abs(zmaps["Houses"].get_fdata()[active]).mean() < 3


def test_events_validation(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    path.write_text("onset\ttrial_type\n1\ta\n")
    with pytest.raises(InputDataError, match="duration"):
        read_events(str(path))
    path.write_text("onset\tduration\n1\t2\n")
    assert list(read_events(str(path))["trial_type"]) == ["task"]


def test_condition_label():
    assert condition_label("face") == "Face"
    assert condition_label("go-no go_2") == "GoNoGo2"
