"""Rigid head motion shared by the functional and diffusion workflows.

One definition of the rotation built from three angles, of the angles read back from a
rotation, and of Power et al.'s (2012) framewise displacement, so BOLD confounds and DWI
motion tables report the same quantity.
"""

from __future__ import annotations

import numpy as np

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
"""fMRIPrep's confound names of the six rigid-body parameters (mm, radians)."""

HEAD_RADIUS_MM = 50.0
"""Radius (mm) of the sphere on which rotations become arc lengths (Power et al. 2012)."""


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Return the 3x3 rotation ``Rz @ Ry @ Rx`` for angles (radians) about x, y and z.

    Parameters
    ----------
    angles : array-like of shape (3,)
        Rotations about the x, y and z axes, in radians.

    Returns
    -------
    numpy.ndarray of shape (3, 3)
    """
    ax, ay, az = angles
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """Return the angles of a rotation ``R = Rz @ Ry @ Rx``.

    Parameters
    ----------
    rotation : numpy.ndarray of shape (3, 3)
        A rotation matrix.

    Returns
    -------
    tuple of float
        Rotations about x, y and z (radians).

    Examples
    --------
    >>> c, s = np.cos(0.1), np.sin(0.1)
    >>> [round(a, 6) + 0.0 for a in euler_angles(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]))]
    [0.0, 0.0, 0.1]
    """
    rx = np.arctan2(rotation[2, 1], rotation[2, 2])
    ry = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    rz = np.arctan2(rotation[1, 0], rotation[0, 0])
    return float(rx), float(ry), float(rz)


def framewise_displacement(params: np.ndarray, radius: float = HEAD_RADIUS_MM) -> np.ndarray:
    """Compute Power et al.'s (2012) framewise displacement (mm); the first value is NaN.

    Parameters
    ----------
    params : numpy.ndarray of shape (T, 6)
        Translations (mm) then rotations (radians) per volume.
    radius : float
        Head radius (mm) turning rotations into arc lengths.

    Returns
    -------
    numpy.ndarray of shape (T,)
        Sum of the absolute volume-to-volume changes of the six parameters.
    """
    diff = np.abs(np.diff(np.asarray(params, dtype=float), axis=0))
    fd = diff[:, :3].sum(axis=1) + radius * diff[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])
