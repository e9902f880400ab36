"""Synthetic diffusion series of one participant.

A known tensor field (FA, MD and principal directions), two b=0 volumes and well-spread
gradient directions at b=1000 s/mm^2, b-vectors in the FSL convention.
"""

from __future__ import annotations

import numpy as np

from brainscale import resources
from brainscale.bids_app.synth.geometry import brain_box, las_grid, sample
from brainscale.bids_app.synth.scanner import save_nifti
from brainscale.bids_app.synth.spec import SubjectContext
from brainscale.derivatives import atomic_write, write_json

B_VALUE = 1000.0


def tensor_field(template_to_subject: np.ndarray, shape, affine):
    """Return the ground-truth tensor field and tissue maps on the DWI grid.

    Parameters
    ----------
    template_to_subject : numpy.ndarray
        4x4 world matrix from template to subject space.
    shape, affine
        The DWI grid.

    Returns
    -------
    fa, md : numpy.ndarray
        Fractional anisotropy and mean diffusivity (mm^2/s).
    direction : numpy.ndarray of shape ``shape + (3,)``
        Principal direction in subject world axes.
    wm, gm, csf : numpy.ndarray
        Template tissue probabilities sampled on the grid.
    """
    world_to_template = np.linalg.inv(template_to_subject)
    wm = sample(resources.get_template_probseg("WM", 2), shape, affine, world_to_template)
    gm = sample(resources.get_template_probseg("GM", 2), shape, affine, world_to_template)
    csf = sample(resources.get_template_probseg("CSF", 2), shape, affine, world_to_template)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    tpl_world = (world_to_template @ affine)[:3] @ np.vstack([ijk, np.ones((1, ijk.shape[1]))])
    x, y, z = (tpl_world[i].reshape(shape) for i in range(3))
    fa = np.where(wm > 0.5, 0.25 + 0.5 * wm, 0.1 * (gm > 0.2)).astype(np.float32)
    md = np.where(csf > 0.5, 3.0e-3, 0.75e-3).astype(np.float32)
    fa[csf > 0.5] = 0.0
    callosal = (np.abs(x) < 18) & (z > 0) & (z < 30) & (np.abs(y + 10) < 30)
    direction = np.zeros(shape + (3,), dtype=np.float32)
    direction[..., 1] = 1.0  # anterior-posterior by default
    direction[callosal] = (1.0, 0.0, 0.0)
    direction[(np.abs(x) > 18) & (z < -5)] = (0.0, 0.0, 1.0)  # descending, inferior-superior
    rotation = template_to_subject[:3, :3] / np.cbrt(np.linalg.det(template_to_subject[:3, :3]))
    direction = direction @ rotation.T
    return fa, md, direction, wm, gm, csf


def tensor_eigenvalues(fa: np.ndarray, md: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of a cylindrically symmetric tensor with given FA and MD.

    With ``l1 = md (1 + 2a)`` and ``l2 = l3 = md (1 - a)``, FA = 3a / sqrt(3 + 6a^2).

    Parameters
    ----------
    fa, md : numpy.ndarray
        Target fractional anisotropy (< 1) and mean diffusivity.

    Returns
    -------
    l1, l2 : numpy.ndarray
        Axial and radial diffusivities.
    """
    a = np.sqrt(3 * fa**2 / (9 - 6 * fa**2))
    return md * (1 + 2 * a), md * (1 - a)


def gradient_directions(count: int, seed: int) -> np.ndarray:
    """Return ``count`` well-spread unit vectors (electrostatic repulsion, dipy).

    Parameters
    ----------
    count : int
        Number of directions.
    seed : int
        Seed of the random start.

    Returns
    -------
    numpy.ndarray
        ``(count, 3)`` unit vectors.
    """
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(seed)
    theta, phi = np.pi * rng.random(count), 2 * np.pi * rng.random(count)
    hemi = HemiSphere(theta=theta, phi=phi)
    hemi, _ = disperse_charges(hemi, 2000)
    return hemi.vertices


def write_dwi(subject: SubjectContext) -> None:
    """Write one participant's DWI series and its ground-truth maps.

    The series is ``.nii.gz``, ``.bval``, ``.bvec`` and ``.json``; the truth is the FA, MD
    and principal-direction (V1) maps.

    Parameters
    ----------
    subject : SubjectContext
        The participant (Rician noise is drawn from ``rng``; the gradient table from
        ``spec.seed``).
    """
    root, truth, spec, rng = subject.root, subject.truth, subject.spec, subject.rng
    matrix, scanner, common = subject.template_to_subject, subject.scanner, subject.sidecar
    truth_dir = subject.truth_dir
    sub = truth.participant_id
    center, extent = brain_box(matrix)
    shape, affine = las_grid(center, extent, spec.dwi_voxel_mm)
    fa, md, direction, wm, gm, csf = tensor_field(matrix, shape, affine)
    l1, l2 = tensor_eigenvalues(fa, md)
    directions = gradient_directions(spec.directions, spec.seed)
    bvals = np.concatenate([[0.0, 0.0], np.full(len(directions), B_VALUE)])
    gradients_world = np.vstack([np.zeros((2, 3)), directions])
    # S = S0 exp(-b (l2 + (l1 - l2) (g.e)^2)) for a cylindrical tensor with axis e.
    dot = np.einsum("...k,nk->...n", direction, gradients_world)
    signal = np.exp(-bvals * (l2[..., None] + (l1 - l2)[..., None] * dot**2))
    s0 = (0.4 * wm + 0.6 * gm + 1.5 * csf).astype(np.float32)
    sigma = s0[s0 > 0.3].mean() / 30.0
    clean = s0[..., None] * signal
    noisy = np.sqrt((clean + rng.normal(0, sigma, clean.shape)) ** 2
                    + rng.normal(0, sigma, clean.shape) ** 2)
    dwi = (noisy * scanner["gain"]).astype(np.float32)
    # FSL convention: b-vectors in voxel axes; the LAS grid's first axis points left.
    voxel_axes = affine[:3, :3] / np.abs(np.diag(affine[:3, :3]))
    bvecs = gradients_world @ voxel_axes
    name = f"{sub}_dwi"
    folder = root / sub / "dwi"
    save_nifti(dwi, affine, folder / f"{name}.nii.gz", zooms_t=1.0)
    with atomic_write(folder / f"{name}.bval") as handle:
        handle.write(" ".join(f"{b:g}" for b in bvals) + "\n")
    with atomic_write(folder / f"{name}.bvec") as handle:
        for row in bvecs.T:
            handle.write(" ".join(f"{v:.6f}" for v in row) + "\n")
    write_json(folder / f"{name}.json", {
        **common, "PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.06,
        "EchoTime": 0.08, "RepetitionTime": 6.0,
    })
    truth_dir.mkdir(parents=True, exist_ok=True)
    for label, data in (("FA", fa), ("MD", md)):
        save_nifti(data.astype(np.float32), affine, truth_dir / f"{name}_param-{label}.nii.gz")
    save_nifti(direction.astype(np.float32), affine, truth_dir / f"{name}_param-V1.nii.gz")
