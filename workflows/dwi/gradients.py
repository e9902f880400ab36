"""Diffusion gradient tables: reading, checking, shells, frames and rotation.

b-vectors are kept in the *voxel frame* of the image everywhere inside BrainScale
(the frame dipy assumes). FSL/BIDS ``.bvec`` files use the voxel frame with the first
axis flipped when the image affine has a positive determinant (a "neurological"
voxel order); :func:`fsl_to_voxel_bvecs` and :func:`voxel_to_fsl_bvecs` convert.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dipy.core.gradients import GradientTable, gradient_table

from brainscale.errors import InputDataError

B0_THRESHOLD = 50.0
"""b-values (s/mm^2) at or below this are treated as b=0."""

SHELL_TOLERANCE = 100.0
"""b-values within this distance (s/mm^2) belong to the same shell."""


def read_bval_bvec(
    bval_file: str | Path, bvec_file: str | Path, n_volumes: int, dwi_file: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a ``.bval``/``.bvec`` pair against the number of DWI volumes.

    Parameters
    ----------
    bval_file, bvec_file : str or Path
        FSL-format gradient files (one row of b-values; three rows of vectors).
    n_volumes : int
        Number of volumes of the diffusion image.
    dwi_file : str or Path, optional
        The diffusion image, named in error messages.

    Returns
    -------
    bvals : ndarray, shape (n,)
        b-values in s/mm^2.
    bvecs : ndarray, shape (n, 3)
        Unit b-vectors as written in the file (FSL frame); zero rows for b=0.

    Raises
    ------
    InputDataError
        When the files cannot be parsed, their counts disagree with each other or
        with the image, or a diffusion-weighted volume has a null b-vector.
    """
    where = f" for {dwi_file}" if dwi_file else ""
    try:
        bvals = np.loadtxt(bval_file, ndmin=1, dtype=float).ravel()
        bvecs = np.loadtxt(bvec_file, ndmin=2, dtype=float)
    except (OSError, ValueError) as exc:
        raise InputDataError(
            f"cannot read gradient files {bval_file} / {bvec_file}: {exc}"
        ) from exc
    if bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T
    if bvecs.shape[0] != 3:
        raise InputDataError(
            f"{bvec_file}: expected 3 rows of b-vectors, found an array of shape {bvecs.shape}"
        )
    bvecs = bvecs.T
    counts = {"bval": bvals.size, "bvec": bvecs.shape[0], "image volumes": n_volumes}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise InputDataError(
            f"inconsistent gradient files{where}: {Path(bval_file).name} / "
            f"{Path(bvec_file).name} ({detail})"
        )
    if np.any(bvals < 0) or not np.all(np.isfinite(bvals)) or not np.all(np.isfinite(bvecs)):
        raise InputDataError(f"{bval_file}: negative or non-finite b-values or b-vectors")
    norms = np.linalg.norm(bvecs, axis=1)
    weighted = bvals > B0_THRESHOLD
    if np.any(norms[weighted] < 1e-3):
        bad = np.flatnonzero(weighted & (norms < 1e-3)).tolist()
        raise InputDataError(f"{bvec_file}: diffusion-weighted volumes {bad} have a null b-vector")
    return bvals, normalize_bvecs(bvecs, bvals)


def normalize_bvecs(bvecs: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Scale b-vectors to unit norm and zero those of b=0 volumes.

    Parameters
    ----------
    bvecs : ndarray, shape (n, 3)
        b-vectors.
    bvals : ndarray, shape (n,)
        b-values.

    Returns
    -------
    ndarray, shape (n, 3)
        Unit b-vectors (zero rows at b=0).
    """
    bvecs = np.asarray(bvecs, dtype=float).copy()
    norms = np.linalg.norm(bvecs, axis=1)
    weighted = (np.asarray(bvals) > B0_THRESHOLD) & (norms > 0)
    bvecs[weighted] /= norms[weighted, None]
    bvecs[~weighted] = 0.0
    return bvecs


def detect_shells(bvals: np.ndarray, tolerance: float = SHELL_TOLERANCE) -> np.ndarray:
    """Group b-values into shells.

    Parameters
    ----------
    bvals : ndarray, shape (n,)
        b-values in s/mm^2.
    tolerance : float
        Maximum distance between sorted b-values of one shell.

    Returns
    -------
    ndarray
        Sorted shell b-values (rounded mean of each group); 0 first when b=0 volumes exist.
    """
    values = np.where(np.asarray(bvals) <= B0_THRESHOLD, 0.0, np.asarray(bvals, dtype=float))
    ordered = np.sort(values)
    groups = np.split(ordered, np.flatnonzero(np.diff(ordered) > tolerance) + 1)
    return np.array([round(float(g.mean())) for g in groups if g.size])


def fsl_to_voxel_bvecs(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Convert FSL-convention b-vectors to the voxel frame of the image.

    Parameters
    ----------
    bvecs : ndarray, shape (n, 3)
        b-vectors as stored in a ``.bvec`` file.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of the image.

    Returns
    -------
    ndarray, shape (n, 3)
        b-vectors along the voxel axes.
    """
    out = np.asarray(bvecs, dtype=float).copy()
    if np.linalg.det(affine[:3, :3]) > 0:
        out[:, 0] = -out[:, 0]
    return out


def voxel_to_fsl_bvecs(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Convert voxel-frame b-vectors back to the FSL convention (an involution).

    Parameters
    ----------
    bvecs : ndarray, shape (n, 3)
        b-vectors along the voxel axes.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of the image.

    Returns
    -------
    ndarray, shape (n, 3)
        b-vectors in the FSL convention.
    """
    return fsl_to_voxel_bvecs(bvecs, affine)


def make_gradient_table(bvals: np.ndarray, bvecs: np.ndarray) -> GradientTable:
    """Build a dipy gradient table with BrainScale's b=0 threshold.

    Parameters
    ----------
    bvals : ndarray, shape (n,)
        b-values.
    bvecs : ndarray, shape (n, 3)
        Voxel-frame b-vectors.

    Returns
    -------
    dipy.core.gradients.GradientTable
        The table.
    """
    bvals = np.asarray(bvals, dtype=float)
    return gradient_table(bvals, bvecs=normalize_bvecs(bvecs, bvals), b0_threshold=B0_THRESHOLD)


def rotate_bvecs(bvecs: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Rotate each b-vector by the inverse of its volume's head rotation.

    A volume whose head was rotated by ``R`` (reference-to-volume point mapping) and
    resampled back onto the reference grid was encoded along ``R.T @ g`` in the
    reference frame.

    Parameters
    ----------
    bvecs : ndarray, shape (n, 3)
        Voxel-frame b-vectors.
    rotations : ndarray, shape (n, 3, 3)
        Per-volume matrices (the rotation part is extracted by polar decomposition).

    Returns
    -------
    ndarray, shape (n, 3)
        Rotated b-vectors (unit norm, zero rows stay zero).
    """
    out = np.zeros_like(np.asarray(bvecs, dtype=float))
    for i, (vec, mat) in enumerate(zip(bvecs, rotations, strict=True)):
        out[i] = rotation_part(mat).T @ vec
    return out


def rotation_part(matrix: np.ndarray) -> np.ndarray:
    """Return the closest rotation to a 3x3 linear map (polar decomposition).

    Parameters
    ----------
    matrix : ndarray, shape (3, 3)
        Linear part of an affine transform.

    Returns
    -------
    ndarray, shape (3, 3)
        Proper rotation matrix.
    """
    u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=float))
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        u[:, -1] = -u[:, -1]
        rot = u @ vt
    return rot
