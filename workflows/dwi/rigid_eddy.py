"""Split each diffusion volume's affine transform into head motion and eddy currents.

The affine registration of a diffusion-weighted volume to its target absorbs two things:
the head's rigid motion and the eddy-current distortion, which displaces the image along
the phase-encoding (PE) axis only, by a field linear in position (Jezzard et al. 1998;
FSL eddy's linear model, Andersson & Sotiropoulos 2016). With ``G`` the rigid motion
about the brain centre ``c`` and ``E`` the eddy displacement, the target-to-volume point
mapping is ``T = E o G``:

- ``G(p) = c + R (p - c) + t``: rotation ``R`` and translation ``t`` of the brain centre;
- ``E(q) = q + e_pe (a . (q - c) + o)``: ``a`` (mm of PE displacement per mm along each
  voxel axis; its PE entry is the scaling, the others the shears) and ``o`` the offset
  (mm) at the brain centre.

So the linear part is ``A = (I + e_pe a^T) R``: the rows of ``A`` off the PE axis are
those of ``R`` (taken as the nearest pair of orthonormal rows, the PE row their cross
product), ``a^T = A_pe R^T - e_pe^T``, and the translation off the PE axis is the head's.
Along the PE axis the head's translation and the eddy offset ``o`` are the same thing in
one volume; as in FSL eddy (its default, ``--dont_sep_offs_move`` off) they are told
apart over the series: the offset of an eddy field is linear in the diffusion gradient
``sqrt(b / b_max) g`` (zero for b=0), so the PE shift of the diffusion-weighted volumes
is regressed on those three columns and a constant; the gradient-explained part is the
offset, the constant and the residual are head motion. Motion that follows the gradient
direction is indistinguishable from an eddy offset and goes to the offset (a fraction of
about ``3 / n`` of a random PE motion's variance with ``n`` diffusion-weighted volumes).

Framewise displacement (Power et al. 2012, 50 mm sphere) is computed from the rigid part
only, as MRIQC, QSIPrep and eddy report motion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from brainscale.workflows.dwi.gradients import B0_THRESHOLD
from brainscale.workflows.dwi.sdc import parse_phase_encoding
from brainscale.workflows.rigid_motion import (
    MOTION_COLUMNS,
    euler_angles,
    framewise_displacement,
)

EDDY_COLUMNS = ["eddy_offset", "eddy_x", "eddy_y", "eddy_z", "eddy_residual"]
"""Eddy-current terms: PE offset at the brain centre (mm), PE displacement per mm along
each voxel axis (``a``), and the norm of the non-rigid deformation off the PE axis that
the model leaves unexplained (should stay near 0)."""

FD_DEFINITION = (
    "Power et al. 2012 framewise displacement (50 mm sphere) from the rigid part of each "
    "volume's transform only: rotation from the rows off the phase-encoding axis, "
    "translation of the brain centre with the eddy-current scaling, shears and "
    "gradient-linear offset along the phase-encoding axis removed (reported as eddy_*)")
"""How DWI framewise displacement is defined (confounds and IQM sidecars)."""

CONFOUNDS_SIDECAR = {
    **{c: {"Units": "mm", "Description": "translation of the brain centre, rigid part of the "
           "volume's transform (eddy offset removed along the phase-encoding axis)"}
       for c in MOTION_COLUMNS[:3]},
    **{c: {"Units": "rad", "Description": "rotation (R = Rz Ry Rx), rigid part of the "
           "volume's transform"} for c in MOTION_COLUMNS[3:]},
    "framewise_displacement": {"Units": "mm", "Description": FD_DEFINITION},
    "eddy_offset": {
        "Units": "mm",
        "Description": "eddy-current displacement along the phase-encoding axis at the brain "
                       "centre: the part of the volume's PE shift linear in the diffusion "
                       "gradient sqrt(b/bmax) g (as FSL eddy separates offset from motion)"},
    **{f"eddy_{ax}": {"Units": "mm/mm",
                      "Description": f"eddy-current displacement along the phase-encoding axis "
                                     f"per mm along voxel axis {ax} (on the PE axis itself: "
                                     f"the scaling; otherwise a shear)"} for ax in "xyz"},
    "eddy_residual": {
        "Units": "1",
        "Description": "Frobenius norm of the non-rigid deformation off the phase-encoding "
                       "axis that the eddy model leaves unexplained (near 0 when it holds)"},
}
"""Sidecar of the diffusion confounds TSV (every column's units and definition)."""

MIN_OFFSET_VOLUMES = 12
"""Diffusion-weighted volumes needed to separate the eddy offset from PE motion (three
per parameter of the offset model); with fewer the whole PE shift counts as motion."""


def split_linear(linear: np.ndarray, pe_axis: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Split a 3x3 linear map ``A = (I + e_pe a^T) R`` into ``R`` and ``a``.

    Parameters
    ----------
    linear : ndarray, shape (3, 3)
        Linear part of a target-to-volume point mapping (voxel-axis frame).
    pe_axis : int
        Voxel axis of phase encoding.

    Returns
    -------
    rotation : ndarray, shape (3, 3)
        Proper rotation whose rows off the PE axis are nearest to those of ``linear``.
    eddy : ndarray, shape (3,)
        ``a``: PE displacement per mm along each axis (PE entry: scaling, others: shears).
    residual : float
        Frobenius norm of the rows of ``linear @ rotation.T - I`` off the PE axis: the
        non-rigid deformation that an eddy field along ``pe_axis`` cannot explain.
    """
    linear = np.asarray(linear, dtype=float)
    others = [(pe_axis + 1) % 3, (pe_axis + 2) % 3]
    u, _, vt = np.linalg.svd(linear[others], full_matrices=False)
    rotation = np.zeros((3, 3))
    rotation[others] = u @ vt
    rotation[pe_axis] = np.cross(rotation[others[0]], rotation[others[1]])
    distortion = linear @ rotation.T
    eddy = distortion[pe_axis] - np.eye(3)[pe_axis]
    residual = float(np.linalg.norm(distortion[others] - np.eye(3)[others]))
    return rotation, eddy, residual


def infer_pe_axis(matrices: np.ndarray) -> int:
    """Find the voxel axis along which an eddy model best explains the series' affines.

    Parameters
    ----------
    matrices : ndarray, shape (n, 4, 4)
        Target-to-volume point mappings.

    Returns
    -------
    int
        The axis whose summed :func:`split_linear` residual is smallest (any axis for
        purely rigid transforms: all then give the same rotation).
    """
    misfit = [sum(split_linear(m[:3, :3], axis)[2] for m in matrices) for axis in range(3)]
    return int(np.argmin(misfit))


def common_pe_axis(metadata: Sequence[Mapping]) -> int | None:
    """Return the phase-encoding axis shared by every series (``None``: unknown or mixed)."""
    axes = set()
    for meta in metadata:
        try:
            axes.add(parse_phase_encoding(meta.get("PhaseEncodingDirection", ""))[0])
        except ValueError:
            return None
    return axes.pop() if len(axes) == 1 else None


def pe_polarities(metadata: Sequence[Mapping], n_volumes: Sequence[int]) -> list[int]:
    """PE polarity (+1 for ``i``/``j``/``k``, -1 for ``i-``...) of every volume.

    Parameters
    ----------
    metadata : sequence of mapping
        BIDS sidecar of each series, in the order the series are concatenated.
    n_volumes : sequence of int
        Volumes of each series.

    Returns
    -------
    list of int
        One sign per volume of the concatenated series (+1 where the direction is unknown).
    """
    signs = []
    for meta, count in zip(metadata, n_volumes, strict=True):
        try:
            sign = parse_phase_encoding(meta.get("PhaseEncodingDirection", ""))[1]
        except ValueError:
            sign = 1
        signs += [sign] * int(count)
    return signs


def gradient_design(bvals: np.ndarray, bvecs: np.ndarray) -> np.ndarray:
    """Columns ``sqrt(b / b_max) g``: gradient amplitude and direction of each volume."""
    bvals = np.asarray(bvals, dtype=float)
    scale = np.sqrt(np.clip(bvals, 0, None) / max(float(bvals.max()), 1e-9))
    scale[bvals <= B0_THRESHOLD] = 0.0
    return scale[:, None] * np.asarray(bvecs, dtype=float)


def fit_eddy_offset(pe_shift: np.ndarray, pe_scale: np.ndarray, bvals: np.ndarray,
                    bvecs: np.ndarray, pe_sign: np.ndarray | None = None) -> np.ndarray:
    """Eddy offset of each volume: the part of its PE shift linear in the gradient.

    The PE shift of the brain centre is ``t_pe + o / (1 + a_pe)`` with ``o = beta .
    sqrt(b / b_max) g``; it is fitted on the diffusion-weighted volumes by least squares
    on a constant (head motion) and the three gradient columns divided by ``1 + a_pe``.
    The same field displaces the image the other way when the PE polarity is reversed,
    so each volume's columns are multiplied by its polarity ``pe_sign``.

    Parameters
    ----------
    pe_shift : ndarray, shape (n,)
        Shift (mm) of the brain centre along the PE axis, eddy shears removed.
    pe_scale : ndarray, shape (n,)
        ``1 + a_pe``: the eddy scaling along the PE axis.
    bvals, bvecs : ndarray
        b-values and (unrotated, as applied) b-vectors.
    pe_sign : ndarray, shape (n,), optional
        PE polarity (+1 or -1) of each volume's series (default: all +1).

    Returns
    -------
    ndarray, shape (n,)
        Offset ``o`` (mm); zero for b=0 volumes, and for every volume when fewer than
        :data:`MIN_OFFSET_VOLUMES` diffusion-weighted volumes or degenerate directions
        leave the model unidentifiable.
    """
    design = gradient_design(bvals, bvecs)
    if pe_sign is not None:
        design = design * np.asarray(pe_sign, dtype=float)[:, None]
    weighted = np.asarray(bvals, dtype=float) > B0_THRESHOLD
    offset = np.zeros(len(pe_shift))
    scaled = design[weighted] / np.asarray(pe_scale, dtype=float)[weighted, None]
    full = np.column_stack([np.ones(int(weighted.sum())), scaled])
    if weighted.sum() < MIN_OFFSET_VOLUMES or np.linalg.matrix_rank(full) < 4:
        return offset
    beta, *_ = np.linalg.lstsq(full, np.asarray(pe_shift, dtype=float)[weighted], rcond=None)
    offset[weighted] = design[weighted] @ beta[1:]  # the constant stays head motion
    return offset


def rigid_eddy_parameters(
    matrices: np.ndarray,
    center: np.ndarray | None = None,
    *,
    pe_axis: int | None = None,
    bvals: np.ndarray | None = None,
    bvecs: np.ndarray | None = None,
    pe_sign: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Rigid motion, eddy terms and framewise displacement of per-volume affines.

    Parameters
    ----------
    matrices : ndarray, shape (n, 4, 4)
        Target-to-volume point mappings (mm along voxel axes).
    center : ndarray, shape (3,), optional
        Brain centre (mm, same space): motion is reported as its displacement and the
        eddy offset is the PE displacement there (default: the space's origin).
    pe_axis : int, optional
        Voxel axis of phase encoding (default: :func:`infer_pe_axis`).
    bvals, bvecs : ndarray, optional
        b-values and applied b-vectors; with them the eddy offset is separated from PE
        motion (:func:`fit_eddy_offset`), without them the whole PE shift is motion.
    pe_sign : ndarray, shape (n,), optional
        PE polarity of each volume (:func:`pe_polarities`; default: all +1).

    Returns
    -------
    rotations : ndarray, shape (n, 3, 3)
        Head rotation of each volume (to rotate its b-vector).
    pandas.DataFrame
        :data:`MOTION_COLUMNS` (mm, radians; rigid part only), ``framewise_displacement``
        (Power et al. 2012 from those six; NaN for the first volume) and
        :data:`EDDY_COLUMNS`.
    """
    matrices = np.asarray(matrices, dtype=float)
    center = np.zeros(3) if center is None else np.asarray(center, dtype=float)
    axis = infer_pe_axis(matrices) if pe_axis is None else int(pe_axis)
    others = [(axis + 1) % 3, (axis + 2) % 3]
    n = len(matrices)
    rotations, eddy, residual = np.zeros((n, 3, 3)), np.zeros((n, 3)), np.zeros(n)
    shift, pe_shift = np.zeros((n, 3)), np.zeros(n)
    for k, mat in enumerate(matrices):
        rotations[k], eddy[k], residual[k] = split_linear(mat[:3, :3], axis)
        shift[k] = mat[:3, :3] @ center + mat[:3, 3] - center  # T(c) - c
        # T(c) - c along PE = (1 + a_pe) t_pe + sum_off a_i t_i + o: the shift t_pe + o / (1 + a_pe)
        pe_shift[k] = (shift[k, axis] - eddy[k, others] @ shift[k, others]) / (1 + eddy[k, axis])
    pe_scale = 1 + eddy[:, axis]
    offset = (np.zeros(n) if bvals is None or bvecs is None
              else fit_eddy_offset(pe_shift, pe_scale, bvals, bvecs, pe_sign))
    shift[:, axis] = pe_shift - offset / pe_scale
    table = pd.DataFrame(np.column_stack([shift, [euler_angles(r) for r in rotations]]),
                         columns=list(MOTION_COLUMNS))
    table["framewise_displacement"] = framewise_displacement(table[list(MOTION_COLUMNS)].to_numpy())
    table["eddy_offset"] = offset
    table[["eddy_x", "eddy_y", "eddy_z"]] = eddy
    table["eddy_residual"] = residual
    return rotations, table
