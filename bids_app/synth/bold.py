"""Synthetic resting BOLD run of one participant.

Regional signals with a known network structure, known head motion, two
non-steady-state volumes and interleaved ``SliceTiming``.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from brainscale import resources
from brainscale.bids_app.synth.geometry import brain_box, las_grid, rigid_matrix, sample
from brainscale.bids_app.synth.scanner import bias_field, save_nifti
from brainscale.bids_app.synth.spec import SubjectContext
from brainscale.derivatives import write_json

#: Network of each Desikan-Killiany region is chosen by hemisphere and by the sign of
#: the y coordinate of its centroid: 0 left-anterior, 1 left-posterior, 2 right-anterior,
#: 3 right-posterior.
N_NETWORKS = 4

MOTION_STEP_SD = (0.04, 0.04, 0.06, 0.04, 0.04, 0.04)
"""Per-volume steps of the head-motion random walk: mm (x, y, z), then degrees."""
MOTION_LIMIT = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
"""The walk is clipped to +-1 mm and +-1 degree: the motion of a compliant adult at rest
(mean framewise displacement ~0.1-0.2 mm; Power et al. 2014, NeuroImage 84:320)."""


def head_motion(rng: np.random.Generator, volumes: int) -> np.ndarray:
    """Draw a realistic head-motion series: a slow random walk starting at zero.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    volumes : int
        Number of volumes.

    Returns
    -------
    numpy.ndarray of shape (volumes, 6)
        ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z`` (radians), the
        fMRIPrep convention; steps of :data:`MOTION_STEP_SD` (rotations drawn in degrees).
    """
    walk = np.cumsum(rng.normal(0, 1, (volumes, 6)) * MOTION_STEP_SD, axis=0)
    walk = np.clip(walk - walk[0], -np.asarray(MOTION_LIMIT), MOTION_LIMIT)
    return np.column_stack([walk[:, :3], np.deg2rad(walk[:, 3:])])


def motion_matrix(params: np.ndarray, centre_mm: np.ndarray) -> np.ndarray:
    """Return the world matrix of one motion sample, rotating about ``centre_mm``.

    ``y = R (x - c) + c + t`` with ``R = Rz Ry Rx``: the convention in which head-motion
    estimates are expressed (about the field-of-view centre), so truth and estimates
    compare parameter by parameter.

    Parameters
    ----------
    params : numpy.ndarray of shape (6,)
        Translations (mm) and rotations (radians) about x, y, z.
    centre_mm : numpy.ndarray of shape (3,)
        Centre of rotation (world mm).

    Returns
    -------
    numpy.ndarray
        4x4 matrix.
    """
    matrix = rigid_matrix(np.rad2deg(params[3:]), params[:3])
    matrix[:3, 3] += centre_mm - matrix[:3, :3] @ centre_mm
    return matrix


def region_networks() -> pd.DataFrame:
    """Assign each Desikan-Killiany region to one of the four synthetic networks.

    Returns
    -------
    pandas.DataFrame
        Columns ``index``, ``name``, ``network`` (0 left-anterior, 1 left-posterior,
        2 right-anterior, 3 right-posterior).
    """
    atlas = resources.get_atlas("DesikanKilliany")
    img = atlas.load()
    data = np.asarray(img.dataobj)
    index = atlas.labels["index"].to_numpy()
    centroids = ndimage.center_of_mass(np.ones_like(data), data, index)
    world = nib.affines.apply_affine(img.affine, np.array(centroids))
    network = (world[:, 0] > 0).astype(int) * 2 + (world[:, 1] < -18).astype(int)
    return pd.DataFrame({"index": index, "name": atlas.labels["name"], "network": network})


def network_signals(rng: np.random.Generator, region_network: np.ndarray, volumes: int,
                    coupling: np.ndarray) -> np.ndarray:
    """Draw regional time series: a network factor plus a unique part, low-pass like BOLD.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    region_network : numpy.ndarray of int
        Network of each region.
    volumes : int
        Number of time points.
    coupling : numpy.ndarray of shape (N_NETWORKS,)
        Share of a region's variance that comes from its network factor.

    Returns
    -------
    numpy.ndarray of shape (volumes, regions)
        Unit-variance signals (factors and unique parts are each standardized).
    """
    def smooth(x):
        return ndimage.gaussian_filter1d(x, sigma=1.5, axis=0)

    factors = smooth(rng.standard_normal((volumes, N_NETWORKS)))
    factors = (factors - factors.mean(0)) / factors.std(0)
    unique = smooth(rng.standard_normal((volumes, len(region_network))))
    unique = (unique - unique.mean(0)) / unique.std(0)
    weights = coupling[region_network]
    return np.sqrt(weights) * factors[:, region_network] + np.sqrt(1 - weights) * unique


def write_bold(subject: SubjectContext, networks: pd.DataFrame) -> None:
    """Write one participant's resting BOLD run, its sidecar and its ground truth.

    Parameters
    ----------
    subject : SubjectContext
        The participant (signals, motion, then noise are drawn from ``rng``); the truth
        written is the motion, the regional signals and the coupling.
    networks : pandas.DataFrame
        :func:`region_networks`.
    """
    root, truth, spec, rng = subject.root, subject.truth, subject.spec, subject.rng
    matrix, scanner, common = subject.template_to_subject, subject.scanner, subject.sidecar
    truth_dir = subject.truth_dir
    sub = truth.participant_id
    world_to_template = np.linalg.inv(matrix)
    center, extent = brain_box(matrix)
    shape, affine = las_grid(center, extent, spec.bold_voxel_mm)
    atlas = resources.get_atlas("DesikanKilliany")
    coupling = np.full(N_NETWORKS, spec.coupling)
    if truth.diagnosis == "patient":
        coupling[0] = spec.patient_coupling
    signals = network_signals(rng, networks["network"].to_numpy(), spec.bold_volumes, coupling)
    lookup = np.zeros(int(networks["index"].max()) + 1, dtype=int) - 1
    lookup[networks["index"].to_numpy()] = np.arange(len(networks))
    motion = head_motion(rng, spec.bold_volumes)
    fov_centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0) + affine[:3, 3]
    gm_tpl = resources.get_template_probseg("GM", 2)
    wm_tpl = resources.get_template_probseg("WM", 2)
    csf_tpl = resources.get_template_probseg("CSF", 2)
    head = resources.get_template(2)
    # Baseline T2*-weighted contrast in template space, then one sampling per volume.
    baseline_tpl = (0.2 * np.asarray(head.dataobj) + 0.9 * np.asarray(gm_tpl.dataobj)
                    + 0.7 * np.asarray(wm_tpl.dataobj) + 1.3 * np.asarray(csf_tpl.dataobj))
    labels_tpl = atlas.load()
    label_on_head = sample(labels_tpl, head.shape, head.affine, np.eye(4), order=0)
    region = lookup[np.clip(label_on_head.astype(int), 0, len(lookup) - 1)]
    bold = np.zeros(shape + (spec.bold_volumes,), dtype=np.float32)
    for t in range(spec.bold_volumes):
        move = motion_matrix(motion[t], fov_centre)
        signal_t = np.where(region >= 0, signals[t][np.maximum(region, 0)], 0.0)
        frame_tpl = baseline_tpl * (1 + 0.02 * signal_t * (np.asarray(gm_tpl.dataobj) > 0.2))
        # Volume t sees the head moved by `move` (in subject world space).
        frame = sample(head, shape, affine, world_to_template @ np.linalg.inv(move),
                       data=frame_tpl.astype(np.float32))
        bold[..., t] = frame
    bold *= bias_field(shape, affine, scanner["bias"])[..., None]
    bold[..., :2] *= 1.6  # non-steady-state volumes
    bold += rng.normal(0, 0.01, bold.shape).astype(np.float32)
    bold = np.clip(bold, 0, None) * scanner["gain"]
    n_slices = shape[2]
    order = list(range(0, n_slices, 2)) + list(range(1, n_slices, 2))
    slice_timing = [0.0] * n_slices
    for position, index in enumerate(order):
        slice_timing[index] = round(position * spec.repetition_time / n_slices, 4)
    name = f"{sub}_task-rest_bold"
    save_nifti(bold.astype(np.float32), affine, root / sub / "func" / f"{name}.nii.gz",
               zooms_t=spec.repetition_time)
    write_json(root / sub / "func" / f"{name}.json", {
        **common, "TaskName": "rest", "RepetitionTime": spec.repetition_time,
        "EchoTime": 0.03, "SliceTiming": slice_timing, "PhaseEncodingDirection": "j-",
        "TotalReadoutTime": 0.05, "SliceEncodingDirection": "k",
    })
    truth_dir.mkdir(parents=True, exist_ok=True)
    columns = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    pd.DataFrame(motion, columns=columns).to_csv(
        truth_dir / f"{name}_motion.tsv", sep="\t", index=False)
    pd.DataFrame(signals, columns=networks["name"]).to_csv(
        truth_dir / f"{name}_regionsignals.tsv", sep="\t", index=False)
    write_json(truth_dir / f"{name}_truth.json", {
        "coupling_per_network": coupling.tolist(), "non_steady_state_volumes": 2,
        "motion_units": "mm and radians (fMRIPrep convention), about the centre of the BOLD "
                        "field of view, relative to the first volume",
        "motion_centre_mm": [float(v) for v in fov_centre],
    })
