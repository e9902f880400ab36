"""read_itk_affine against transforms written with known matrix, translation and centre."""

from __future__ import annotations

import ants
import numpy as np
import pytest

from brainscale.workflows.anat.images import read_itk_affine
from brainscale.workflows.anat.normalization import affine_matrix
from brainscale.workflows.func.registration import itk_to_ras_matrix

#: Dyadic values, exact in the float32 that ANTsPy keeps parameters in.
LINEAR = np.array([[1.125, 0.25, 0.0], [-0.125, 0.875, 0.375], [0.0625, 0.0, 1.25]])
TRANSLATION = np.array([4.0, -7.0, 12.5])
CENTRE = np.array([10.0, -20.0, 30.0])


def _write(path) -> str:
    transform = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, matrix=LINEAR,
        translation=list(TRANSLATION), center=list(CENTRE))
    ants.write_transform(transform, str(path))
    return str(path)


@pytest.mark.parametrize("name", ["known.mat", "known.txt"])
def test_reads_matrix_and_offset_of_a_known_transform(tmp_path, name):
    matrix = read_itk_affine(_write(tmp_path / name))
    np.testing.assert_array_equal(matrix[:3, :3], LINEAR)
    # ITK: y = A (x - c) + t + c, so the offset is t + c - A c
    np.testing.assert_array_equal(matrix[:3, 3], TRANSLATION + CENTRE - LINEAR @ CENTRE)
    np.testing.assert_array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0])


def test_maps_points_as_itk_does(tmp_path):
    path = _write(tmp_path / "known.mat")
    transform, matrix = ants.read_transform(path), read_itk_affine(path)
    for point in (CENTRE, np.zeros(3), np.array([-35.0, 60.0, -2.0])):
        expected = np.asarray(transform.apply_to_point(list(point)))
        np.testing.assert_allclose(matrix @ [*point, 1.0], [*expected, 1.0], atol=1e-9)
    # the centre moves by t alone
    np.testing.assert_allclose((matrix @ [*CENTRE, 1.0])[:3], CENTRE + TRANSLATION, atol=1e-12)


def test_linear_part_and_ras_form_come_from_the_same_reader(tmp_path):
    path = _write(tmp_path / "known.mat")
    np.testing.assert_array_equal(affine_matrix(path), read_itk_affine(path)[:3, :3])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    ras = itk_to_ras_matrix(path)
    np.testing.assert_array_equal(ras, flip @ read_itk_affine(path) @ flip)
    point = np.array([5.0, 6.0, 7.0])  # RAS
    lps = np.asarray(ants.read_transform(path).apply_to_point(list(point * [-1, -1, 1])))
    np.testing.assert_allclose((ras @ [*point, 1.0])[:3], lps * [-1, -1, 1], atol=1e-9)
