"""Geometry of the synthetic heads.

Rigid transforms, LAS grids, resampling, and the boxes that the template head and brain
occupy in a participant's space.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale import resources


def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_matrix(rotation_deg, translation_mm, scale: float = 1.0) -> np.ndarray:
    """Return the 4x4 matrix ``x -> R (scale * x) + t`` (rotations about x, then y, then z).

    Parameters
    ----------
    rotation_deg : sequence of 3 floats
        Rotation angles about x, y and z in degrees.
    translation_mm : sequence of 3 floats
        Translation in mm.
    scale : float
        Isotropic scaling applied before the rotation.

    Returns
    -------
    numpy.ndarray
        The 4x4 homogeneous matrix.
    """
    matrix = np.eye(4)
    matrix[:3, :3] = _rotation(rotation_deg) * scale
    matrix[:3, 3] = translation_mm
    return matrix


def las_grid(center_mm: np.ndarray, extent_mm: np.ndarray, voxel_mm: float):
    """Return the shape and LAS affine of a grid covering a box.

    Parameters
    ----------
    center_mm : numpy.ndarray
        Box centre in world (RAS+) mm.
    extent_mm : numpy.ndarray
        Box size along x, y, z in mm.
    voxel_mm : float
        Isotropic voxel size.

    Returns
    -------
    shape : tuple of int
        Grid shape.
    affine : numpy.ndarray
        Voxel-to-world matrix with the first axis pointing left (negative determinant).
    """
    shape = tuple(int(np.ceil(e / voxel_mm)) for e in extent_mm)
    affine = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
    half = (np.array(shape) - 1) / 2 * voxel_mm
    affine[:3, 3] = center_mm + np.array([half[0], -half[1], -half[2]])
    return shape, affine


def sample(image: nib.Nifti1Image, shape, affine, world_to_source: np.ndarray,
           order: int = 1, data: np.ndarray | None = None) -> np.ndarray:
    """Sample ``image`` on a target grid through a world-to-world mapping.

    Parameters
    ----------
    image : nibabel.Nifti1Image
        Source image (its data, or ``data`` when given).
    shape, affine
        Target grid.
    world_to_source : numpy.ndarray
        4x4 matrix mapping target world coordinates to source world coordinates.
    order : int
        Spline order (0 nearest, 1 linear).
    data : numpy.ndarray, optional
        Source data to use instead of the image's (same grid).

    Returns
    -------
    numpy.ndarray
        float32 samples on the target grid (0 outside the source).
    """
    source = np.asarray(image.dataobj if data is None else data, dtype=np.float32)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    voxel_map = np.linalg.inv(image.affine) @ world_to_source @ affine
    coords = voxel_map[:3, :3] @ ijk + voxel_map[:3, 3:4]
    values = ndimage.map_coordinates(source, coords, order=order, mode="constant", cval=0.0)
    return values.reshape(shape).astype(np.float32)


def _padded_box(world: np.ndarray, margin_mm: float):
    """Centre and extent of the bounding box of ``(n, 3)`` world points, padded."""
    low, high = world.min(0) - margin_mm, world.max(0) + margin_mm
    return (low + high) / 2, high - low


def head_box(template_to_subject: np.ndarray, margin_mm: float = 12.0):
    """Return the box that the template head (brain and skull) occupies in subject space.

    Parameters
    ----------
    template_to_subject : numpy.ndarray
        4x4 world matrix from template to subject space.
    margin_mm : float
        Margin added on every side.

    Returns
    -------
    center, extent : numpy.ndarray
        Box centre and size along x, y, z (world mm).
    """
    tpl = resources.get_template(2)
    data = np.asarray(tpl.dataobj)
    ijk = np.argwhere(data > 0.05)
    corners = np.array(
        [[a, b, c] for a in (ijk[:, 0].min(), ijk[:, 0].max())
         for b in (ijk[:, 1].min(), ijk[:, 1].max()) for c in (ijk[:, 2].min(), ijk[:, 2].max())]
    )
    world = nib.affines.apply_affine(template_to_subject @ tpl.affine, corners)
    return _padded_box(world, margin_mm)


def brain_box(template_to_subject: np.ndarray, margin_mm: float = 8.0):
    """Return the box that the template brain mask occupies in subject space.

    Same parameters and returns as :func:`head_box`, with a smaller default margin.
    """
    mask = resources.get_template_mask(2)
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    world = nib.affines.apply_affine(template_to_subject @ mask.affine, ijk)
    return _padded_box(world, margin_mm)
