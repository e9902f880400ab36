"""Synthetic BIDS datasets with known ground truth: the demo and the test-data factory.

Each participant's head is the embedded MNI152 2009a template moved by a known rigid
transform and scaled by a known factor, imaged by a site-specific "scanner" (intensity
scale, bias field, noise). From it come:

- a T1w image (true tissue volumes = template volumes x scale^3);
- a resting BOLD run whose regional signals follow a known network structure (four
  networks of Desikan-Killiany regions; patients have weaker coupling in network 0), with
  known head motion, two non-steady-state volumes and interleaved ``SliceTiming``;
- a DWI series from a known tensor field (FA, MD and principal directions), with two
  b=0 volumes and ``directions`` gradient directions at b=1000 s/mm^2.

Images are written in LAS orientation with FSL-convention b-vectors, as dcm2niix writes
them. The ground truth is stored under ``sourcedata/truth/`` (ignored by BIDS tools).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from brainscale import resources
from brainscale.derivatives import atomic_write, write_json

#: Network of each Desikan-Killiany region is chosen by hemisphere and by the sign of
#: the y coordinate of its centroid: 0 left-anterior, 1 left-posterior, 2 right-anterior,
#: 3 right-posterior.
N_NETWORKS = 4
B_VALUE = 1000.0


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    Attributes
    ----------
    subjects : int
        Number of participants.
    sites : int
        Number of acquisition sites (participants are assigned round-robin).
    seed : int
        Seed of every random draw; the same spec gives the same dataset.
    modalities : tuple of str
        Which of ``anat``, ``func``, ``dwi`` to write.
    t1w_voxel_mm, bold_voxel_mm, dwi_voxel_mm : float
        Isotropic voxel sizes.
    bold_volumes : int
        BOLD time points (two of them non-steady-state).
    repetition_time : float
        BOLD TR in seconds.
    directions : int
        DWI gradient directions at b=1000.
    coupling : float
        Share of a region's BOLD variance that comes from its network (controls).
    patient_coupling : float
        The same for network 0 in patients (the known biological effect).
    """

    subjects: int = 4
    sites: int = 2
    seed: int = 0
    modalities: tuple[str, ...] = ("anat", "func", "dwi")
    t1w_voxel_mm: float = 2.0
    bold_voxel_mm: float = 4.0
    dwi_voxel_mm: float = 3.0
    bold_volumes: int = 100
    repetition_time: float = 2.0
    directions: int = 30
    coupling: float = 0.6
    patient_coupling: float = 0.3


@dataclass(frozen=True)
class SubjectTruth:
    """Ground truth of one synthetic participant."""

    participant_id: str
    site: str
    age: float
    sex: str
    diagnosis: str
    scale: float
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    template_to_subject: list[list[float]]
    volumes_mm3: dict[str, float]


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


def _head_box(template_to_subject: np.ndarray, margin_mm: float = 12.0):
    """Centre and extent of the template brain+skull box in subject space."""
    tpl = resources.get_template(2)
    data = np.asarray(tpl.dataobj)
    ijk = np.argwhere(data > 0.05)
    corners = np.array(
        [[a, b, c] for a in (ijk[:, 0].min(), ijk[:, 0].max())
         for b in (ijk[:, 1].min(), ijk[:, 1].max()) for c in (ijk[:, 2].min(), ijk[:, 2].max())]
    )
    world = nib.affines.apply_affine(template_to_subject @ tpl.affine, corners)
    low, high = world.min(0) - margin_mm, world.max(0) + margin_mm
    return (low + high) / 2, high - low


def _brain_box(template_to_subject: np.ndarray, margin_mm: float = 8.0):
    mask = resources.get_template_mask(2)
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    world = nib.affines.apply_affine(template_to_subject @ mask.affine, ijk)
    low, high = world.min(0) - margin_mm, world.max(0) + margin_mm
    return (low + high) / 2, high - low


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, zooms_t: float | None = None):
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if zooms_t is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (zooms_t,))
    with atomic_write(path, "wb") as handle:
        handle.write(img.to_bytes() if not str(path).endswith(".gz") else _gzip(img.to_bytes()))


def _gzip(raw: bytes) -> bytes:
    import gzip

    return gzip.compress(raw, compresslevel=4, mtime=0)


def _site_scanner(site: int) -> dict:
    scanners = [
        {"Manufacturer": "Siemens", "ManufacturersModelName": "Prisma", "gain": 1000.0,
         "noise": 0.02, "bias": (0.15, 0.0, 0.05)},
        {"Manufacturer": "GE", "ManufacturersModelName": "Discovery MR750", "gain": 1400.0,
         "noise": 0.03, "bias": (-0.05, 0.15, 0.0)},
        {"Manufacturer": "Philips", "ManufacturersModelName": "Achieva", "gain": 800.0,
         "noise": 0.025, "bias": (0.0, -0.1, 0.12)},
    ]
    return scanners[site % len(scanners)]


def _bias_field(shape, affine, coefficients) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]) / 100.0
    field = np.exp(np.tensordot(np.asarray(coefficients, dtype=np.float32), world, axes=1))
    return field.reshape(shape).astype(np.float32)


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


def _bold_signals(rng, n_regions_networks: np.ndarray, volumes: int, coupling: np.ndarray):
    """Regional time series: network factor + unique part, low-pass like BOLD."""
    def smooth(x):
        return ndimage.gaussian_filter1d(x, sigma=1.5, axis=0)

    factors = smooth(rng.standard_normal((volumes, N_NETWORKS)))
    factors = (factors - factors.mean(0)) / factors.std(0)
    unique = smooth(rng.standard_normal((volumes, len(n_regions_networks))))
    unique = (unique - unique.mean(0)) / unique.std(0)
    weights = coupling[n_regions_networks]
    return np.sqrt(weights) * factors[:, n_regions_networks] + np.sqrt(1 - weights) * unique


def _tensor_field(template_to_subject: np.ndarray, shape, affine):
    """FA, MD and principal direction (subject world axes) on the DWI grid."""
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


def generate_dataset(root: str | Path, spec: SynthSpec = SynthSpec()) -> list[SubjectTruth]:
    """Write a synthetic BIDS dataset with its ground truth.

    Parameters
    ----------
    root : path-like
        Dataset folder (created; existing files are overwritten).
    spec : SynthSpec
        What to generate.

    Returns
    -------
    list of SubjectTruth
        The truth of each participant (also written under ``sourcedata/truth``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "dataset_description.json", {
        "Name": "BrainScale synthetic dataset",
        "BIDSVersion": "1.10.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["BrainScale synthetic-data generator"],
        "GeneratedBy": [{"Name": "brainscale synth", "Description": json.dumps(asdict(spec))}],
    })
    with atomic_write(root / "README") as handle:
        handle.write("Synthetic dataset written by `brainscale synth`; ground truth in "
                     "sourcedata/truth/.\n")
    write_json(root / "participants.json", {
        "site": {"Description": "acquisition site (scanner)"},
        "age": {"Description": "age at scan", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "diagnosis": {"Description": "group", "Levels": {"control": "healthy control",
                                                         "patient": "patient"}},
    })
    rng = np.random.default_rng(spec.seed)
    networks = region_networks()
    truths = []
    for number in range(1, spec.subjects + 1):
        site = (number - 1) % spec.sites
        truth = SubjectTruth(
            participant_id=f"sub-{number:02d}",
            site=f"site{site + 1}",
            age=float(np.round(rng.uniform(20, 70), 1)),
            sex="MF"[number % 2],
            diagnosis=("control", "patient")[((number - 1) // spec.sites) % 2],
            scale=float(np.round(rng.uniform(0.92, 1.08), 3)),
            rotation_deg=tuple(float(v) for v in np.round(rng.uniform(-6, 6, 3), 2)),
            translation_mm=tuple(float(v) for v in np.round(rng.uniform(-6, 6, 3), 2)),
            template_to_subject=[],
            volumes_mm3={},
        )
        matrix = rigid_matrix(truth.rotation_deg, truth.translation_mm, truth.scale)
        volume_scale = truth.scale**3
        volumes = {
            label: float(resources.get_template_probseg(label, 1).get_fdata().sum() * volume_scale)
            for label in ("GM", "WM", "CSF")
        }
        volumes["TIV"] = float(resources.get_template_mask(1).get_fdata().sum() * truth.scale**3)
        truth = SubjectTruth(**{**asdict(truth), "template_to_subject": matrix.tolist(),
                                "volumes_mm3": volumes})
        subject_rng = np.random.default_rng([spec.seed, number])
        _write_subject(root, truth, spec, subject_rng, networks)
        truths.append(truth)
    table = pd.DataFrame([{k: getattr(t, k) for k in ("participant_id", "site", "age", "sex",
                                                      "diagnosis")} for t in truths])
    with atomic_write(root / "participants.tsv") as handle:
        table.to_csv(handle, sep="\t", index=False)
    truth_dir = root / "sourcedata" / "truth"
    write_json(truth_dir / "truth.json", {
        "spec": asdict(spec),
        "subjects": [asdict(t) for t in truths],
        "networks": networks.to_dict(orient="list"),
        "b_value": B_VALUE,
    })
    return truths


def _write_subject(root: Path, truth: SubjectTruth, spec: SynthSpec, rng, networks):
    sub = truth.participant_id
    matrix = np.array(truth.template_to_subject)
    world_to_template = np.linalg.inv(matrix)
    scanner = _site_scanner(int(truth.site[4:]) - 1)
    common = {"Manufacturer": scanner["Manufacturer"],
              "ManufacturersModelName": scanner["ManufacturersModelName"],
              "MagneticFieldStrength": 3, "InstitutionName": truth.site}
    truth_dir = root / "sourcedata" / "truth" / sub
    if "anat" in spec.modalities:
        center, extent = _head_box(matrix)
        shape, affine = las_grid(center, extent, spec.t1w_voxel_mm)
        t1 = sample(resources.get_template(1), shape, affine, world_to_template)
        t1 *= _bias_field(shape, affine, scanner["bias"])
        t1 += rng.normal(0, scanner["noise"], shape).astype(np.float32)
        t1 = np.clip(t1, 0, None) * scanner["gain"]
        _save_nifti(t1.astype(np.float32), affine, root / sub / "anat" / f"{sub}_T1w.nii.gz")
        write_json(root / sub / "anat" / f"{sub}_T1w.json",
                   {**common, "RepetitionTime": 2.3, "EchoTime": 0.00298, "FlipAngle": 9,
                    "InversionTime": 0.9, "MRAcquisitionType": "3D"})
    if "func" in spec.modalities:
        _write_bold(root, truth, spec, rng, networks, matrix, scanner, common, truth_dir)
    if "dwi" in spec.modalities:
        _write_dwi(root, truth, spec, rng, matrix, scanner, common, truth_dir)


def _write_bold(root, truth, spec, rng, networks, matrix, scanner, common, truth_dir):
    sub = truth.participant_id
    world_to_template = np.linalg.inv(matrix)
    center, extent = _brain_box(matrix)
    shape, affine = las_grid(center, extent, spec.bold_voxel_mm)
    atlas = resources.get_atlas("DesikanKilliany")
    coupling = np.full(N_NETWORKS, spec.coupling)
    if truth.diagnosis == "patient":
        coupling[0] = spec.patient_coupling
    signals = _bold_signals(rng, networks["network"].to_numpy(), spec.bold_volumes, coupling)
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
    bold *= _bias_field(shape, affine, scanner["bias"])[..., None]
    bold[..., :2] *= 1.6  # non-steady-state volumes
    bold += rng.normal(0, 0.01, bold.shape).astype(np.float32)
    bold = np.clip(bold, 0, None) * scanner["gain"]
    n_slices = shape[2]
    order = list(range(0, n_slices, 2)) + list(range(1, n_slices, 2))
    slice_timing = [0.0] * n_slices
    for position, index in enumerate(order):
        slice_timing[index] = round(position * spec.repetition_time / n_slices, 4)
    name = f"{sub}_task-rest_bold"
    _save_nifti(bold.astype(np.float32), affine, root / sub / "func" / f"{name}.nii.gz",
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


def _write_dwi(root, truth, spec, rng, matrix, scanner, common, truth_dir):
    sub = truth.participant_id
    center, extent = _brain_box(matrix)
    shape, affine = las_grid(center, extent, spec.dwi_voxel_mm)
    fa, md, direction, wm, gm, csf = _tensor_field(matrix, shape, affine)
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
    _save_nifti(dwi, affine, folder / f"{name}.nii.gz", zooms_t=1.0)
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
        _save_nifti(data.astype(np.float32), affine, truth_dir / f"{name}_param-{label}.nii.gz")
    _save_nifti(direction.astype(np.float32), affine, truth_dir / f"{name}_param-V1.nii.gz")
