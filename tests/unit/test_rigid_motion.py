"""The rigid-motion definitions shared by BOLD confounds and DWI motion tables."""

import numpy as np
import pytest

from brainscale.workflows.rigid_motion import (
    HEAD_RADIUS_MM,
    euler_angles,
    framewise_displacement,
    rotation_matrix,
)


def test_rotation_matrix_turns_the_axes_as_built_by_hand():
    quarter = np.pi / 2
    assert rotation_matrix((quarter, 0, 0)) @ [0, 1, 0] == pytest.approx([0, 0, 1], abs=1e-12)
    assert rotation_matrix((0, quarter, 0)) @ [0, 0, 1] == pytest.approx([1, 0, 0], abs=1e-12)
    assert rotation_matrix((0, 0, quarter)) @ [1, 0, 0] == pytest.approx([0, 1, 0], abs=1e-12)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.05, -0.2, 0.3), (-1.0, 0.7, -2.5)])
def test_euler_angles_recover_the_angles_a_rotation_was_built_from(angles):
    assert euler_angles(rotation_matrix(angles)) == pytest.approx(angles, abs=1e-12)


def test_framewise_displacement_is_powers_sum_of_absolute_changes():
    params = np.array([[0, 0, 0, 0, 0, 0],
                       [1.0, -0.5, 0, 0.01, 0, 0],
                       [1.0, -0.5, 0.25, 0.01, -0.02, 0.0]])
    fd = framewise_displacement(params)
    assert np.isnan(fd[0])
    # by hand: 1 + 0.5 + 50 * 0.01 = 2.0; then 0.25 + 50 * 0.02 = 1.25
    assert HEAD_RADIUS_MM == 50.0
    assert fd[1:] == pytest.approx([2.0, 1.25], abs=1e-12)
    assert framewise_displacement(params, radius=80.0)[1] == pytest.approx(1.5 + 0.8)
