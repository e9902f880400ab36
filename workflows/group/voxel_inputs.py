"""Voxel inputs of the group level: MNI-space maps gathered into one memory-mapped array.

The participant level writes maps on the grid of the embedded template
(``space-MNI152NLin2009aSym``). :func:`find_voxel_maps` lists one kind of map per
participant and session (:data:`VOXEL_KINDS`), and :func:`gather_voxel_maps` writes the
in-mask voxels of every map, optionally downsampled by block averaging, as the rows of a
``(n_maps, n_voxels)`` float32 ``.npy`` file opened as a memory map. 10,000 participants
x 2 mm (about 230,000 voxels in the template brain mask) is 9 GB on disk and nothing in
RAM: the image models read mini-batches of rows from it.

Examples
--------
>>> maps = find_voxel_maps(output_dir, "gm")
>>> data = gather_voxel_maps(maps, output_dir / "group" / "voxels" / "gm", downsample=2)
>>> data.values.shape  # (n_maps, n_voxels), a numpy.memmap
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from brainscale.derivatives import atomic_write, write_json
from brainscale.errors import InputDataError
from brainscale.resources import TEMPLATE_SPACE, get_template_mask
from brainscale.workflows.group.collect import KEY_COLUMNS, NO_SESSION, parse_entities
from brainscale.writers import save_nifti

#: Kinds of MNI-space maps: name -> (datatype, suffix, required entities).
VOXEL_KINDS: dict[str, tuple[str, str, dict[str, str]]] = {
    # Jacobian-modulated GM probability (VBM), written by the anatomical workflow
    "gm": ("anat", "probseg", {"space": TEMPLATE_SPACE, "label": "GM", "desc": "modulated"}),
    "t1w": ("anat", "T1w", {"space": TEMPLATE_SPACE, "desc": "preproc"}),
    # first-level z maps (one per condition: select one with ``zmap:desc=<condition>``)
    "zmap": ("func", "statmap", {"space": TEMPLATE_SPACE, "stat": "z"}),
    # written in MNI space only once the DWI / thickness workflows resample them there
    "fa": ("dwi", "dwimap", {"space": TEMPLATE_SPACE, "model": "tensor", "param": "fa"}),
    "md": ("dwi", "dwimap", {"space": TEMPLATE_SPACE, "model": "tensor", "param": "md"}),
    "thickness": ("anat", "morph", {"space": TEMPLATE_SPACE, "desc": "thickness"}),
}


def parse_voxel_kind(spec: str) -> tuple[str, str, str, dict[str, str]]:
    """Parse ``"<kind>[:<entity>=<value>,...]"`` into (name, datatype, suffix, entities).

    >>> parse_voxel_kind("zmap:task=oneback,desc=faces")[3]["desc"]
    'faces'
    """
    kind, _, extra = spec.partition(":")
    if kind not in VOXEL_KINDS:
        raise InputDataError(f"unknown voxel input {kind!r}; choose from {sorted(VOXEL_KINDS)}")
    datatype, suffix, entities = VOXEL_KINDS[kind]
    entities = dict(entities)
    for pair in filter(None, extra.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise InputDataError(f"voxel input {spec!r}: expected <entity>=<value>, got {pair!r}")
        entities[key] = value
    name = kind + "".join(f"_{k}-{v}" for k, v in entities.items()
                          if VOXEL_KINDS[kind][2].get(k) != v)
    return name, datatype, suffix, entities


def find_voxel_maps(output_dir: Path, spec: str) -> pd.DataFrame:
    """List the MNI-space maps of one kind in a derivatives folder.

    Parameters
    ----------
    output_dir : pathlib.Path
        Derivatives folder of the participant level.
    spec : str
        A kind of :data:`VOXEL_KINDS`, optionally with extra entities
        (``"zmap:task=oneback,desc=faces"``).

    Returns
    -------
    pandas.DataFrame
        ``participant_id``, ``session_id`` and ``paths`` (list of files: several runs
        are averaged by :func:`gather_voxel_maps`), sorted.
    """
    _, datatype, suffix, entities = parse_voxel_kind(spec)
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(Path(output_dir).glob(f"sub-*/**/{datatype}/sub-*.nii*")):
        ents = parse_entities(path.name)
        if ents["suffix"] != suffix or any(ents.get(k) != v for k, v in entities.items()):
            continue
        key = (f"sub-{ents['sub']}", f"ses-{ents['ses']}" if "ses" in ents else NO_SESSION)
        found.setdefault(key, []).append(str(path))
    rows = [{"participant_id": p, "session_id": s, "paths": v} for (p, s), v in found.items()]
    return pd.DataFrame(rows, columns=[*KEY_COLUMNS, "paths"])


def block_downsample(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping ``factor``-voxel cubes (trailing partial cubes are dropped)."""
    if factor == 1:
        return volume
    shape = [s // factor for s in volume.shape[:3]]
    cropped = volume[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    blocks = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(volume.dtype)


def downsampled_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """Affine of :func:`block_downsample`'s grid: each voxel centred on its cube's centre."""
    scaled = affine.copy()
    scaled[:3, :3] = affine[:3, :3] * factor
    scaled[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2.0) + affine[:3, 3]
    return scaled


@dataclass
class VoxelData:
    """In-mask voxels of one map per row, with the grid to put them back into images.

    Attributes
    ----------
    values : numpy.ndarray
        ``(n_rows, n_voxels)`` float32 (a read-only :class:`numpy.memmap` once gathered).
    mask : numpy.ndarray
        3D bool mask of the voxels, in C order of ``values``' columns.
    affine : numpy.ndarray
        Voxel-to-MNI affine of the mask grid.
    rows : pandas.DataFrame
        ``participant_id``, ``session_id`` (and ``source``) of each row.
    stem : pathlib.Path or None
        Where :func:`gather_voxel_maps` wrote it: a pickle (joblib workers, saved
        pipelines) then holds the path, not the values, and reopens the memory map.
    """

    values: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stem: Path | None = None

    def __deepcopy__(self, memo):
        """Share the (read-only) data: scikit-learn's ``clone`` must not copy a memory map."""
        return self

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.stem is not None:
            state["values"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.values is None:
            self.values = np.load(f"{self.stem}.npy", mmap_mode="r")

    @property
    def labels(self) -> pd.Index:
        """Row labels ``sub-X`` or ``sub-X_ses-Y``, as the group feature tables use."""
        return pd.Index([p if s == NO_SESSION else f"{p}_{s}"
                         for p, s in self.rows[KEY_COLUMNS].to_numpy()], name="label")

    def frame(self) -> pd.DataFrame:
        """Return the values as a DataFrame indexed by :attr:`labels` (no copy)."""
        return pd.DataFrame(self.values, index=self.labels, copy=False)

    def row_pointers(self) -> pd.DataFrame:
        """Return a one-column table (``voxel_row``) indexed by :attr:`labels`.

        Cross-validation subsets this small table; the image models read the rows it
        points to from :attr:`values` batch by batch, so no fold copies the images.
        """
        return pd.DataFrame({"voxel_row": np.arange(len(self.rows))}, index=self.labels)

    def to_image(self, vector: np.ndarray) -> nib.Nifti1Image:
        """Put one value per in-mask voxel back on the grid (0 outside the mask)."""
        volume = np.zeros(self.mask.shape, dtype=np.float32)
        volume[self.mask] = vector
        img = nib.Nifti1Image(volume, self.affine)
        img.header.set_xyzt_units("mm")
        return img

    @classmethod
    def load(cls, stem: Path) -> VoxelData:
        """Open what :func:`gather_voxel_maps` wrote at ``stem`` (values memory-mapped)."""
        stem = Path(stem)
        mask_img = nib.load(f"{stem}_mask.nii.gz")
        rows = pd.read_csv(f"{stem}_rows.tsv", sep="\t", dtype=str, keep_default_na=False)
        meta = json.loads(Path(f"{stem}.json").read_text())
        return cls(np.load(f"{stem}.npy", mmap_mode="r"), np.asarray(mask_img.dataobj) > 0,
                   mask_img.affine, rows, list(meta.get("Notes", [])), stem)


def _load_map(path: str, grid: tuple | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Load a 3D map as float32 (resampled linearly onto ``grid`` when it differs)."""
    from nibabel.processing import resample_from_to

    try:
        img = nib.load(path)
        img = nib.funcs.squeeze_image(img)
        if img.ndim != 3:
            raise InputDataError(f"{path}: expected a 3D map, found shape {img.shape}")
        resampled = grid is not None and (
            img.shape != grid[0] or not np.allclose(img.affine, grid[1], atol=1e-3))
        if resampled:
            img = resample_from_to(img, grid, order=1)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as err:
        raise InputDataError(f"{path}: cannot be read as a NIfTI map ({err})") from err
    return data, img.affine, resampled


def _mean_map(paths: list[str], grid: tuple | None) -> tuple[np.ndarray, np.ndarray, int]:
    total, affine, n_resampled = None, None, 0
    for path in paths:
        data, affine, resampled = _load_map(path, grid)
        grid = grid or (data.shape, affine)
        n_resampled += resampled
        total = data if total is None else total + data
    return total / len(paths), affine, n_resampled


def _mask_on_grid(mask, grid: tuple, factor: int, maps: pd.DataFrame, coverage: float):
    """Return the 3D bool mask on the downsampled grid."""
    from nibabel.processing import resample_from_to

    if isinstance(mask, str) and mask == "data":
        count = np.zeros(grid[0], dtype=np.int32)
        for paths in maps["paths"]:
            data = _mean_map(paths, grid)[0]
            count += np.isfinite(data) & (data != 0)
        fraction = block_downsample((count / len(maps)).astype(np.float32), factor)
        return fraction >= coverage
    if isinstance(mask, str) and mask == "template":
        mask = get_template_mask(2)
    elif isinstance(mask, str | Path):
        mask = nib.load(mask)
    if isinstance(mask, nib.spatialimages.SpatialImage):
        same = mask.shape == grid[0] and np.allclose(mask.affine, grid[1], atol=1e-3)
        mask = mask if same else resample_from_to(mask, grid, order=0)
        mask = np.asarray(mask.dataobj) > 0
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(grid[0]):
        raise InputDataError(f"mask shape {mask.shape} differs from the maps' {grid[0]}")
    return block_downsample(mask.astype(np.float32), factor) >= 0.5


def gather_voxel_maps(
    maps: pd.DataFrame,
    stem: Path,
    *,
    mask="template",
    downsample: int = 1,
    coverage: float = 0.9,
) -> VoxelData:
    """Write the in-mask voxels of every map into ``<stem>.npy`` (a memory map).

    Parameters
    ----------
    maps : pandas.DataFrame
        :func:`find_voxel_maps`' table (``participant_id``, ``session_id``, ``paths``).
    stem : pathlib.Path
        Output prefix: ``<stem>.npy`` (rows x voxels, float32), ``<stem>_mask.nii.gz``,
        ``<stem>_rows.tsv`` (who each row is, from which files) and ``<stem>.json``.
    mask : {"template", "data"}, path, image or array
        ``"template"``: the embedded MNI152 brain mask resampled to the maps' grid;
        ``"data"``: voxels finite and non-zero in at least ``coverage`` of the maps
        (one more pass over the files); or a mask on the maps' grid.
    downsample : int
        Block-average factor (2: 2 mm -> 4 mm); a mask voxel is kept when at least
        half of its cube is in the mask.
    coverage : float
        Fraction of maps that must cover a voxel for ``mask="data"``.

    Returns
    -------
    VoxelData
        Values memory-mapped from ``<stem>.npy``; non-finite values are set to 0.
    """
    if maps.empty:
        raise InputDataError("no voxel maps to gather")
    if int(downsample) != downsample or downsample < 1:
        raise InputDataError(f"downsample must be a positive integer, not {downsample!r}")
    notes: list[str] = []
    first, affine, _ = _mean_map(maps["paths"].iloc[0], None)
    grid = (first.shape, affine)
    keep = _mask_on_grid(mask, grid, downsample, maps, coverage)
    if not keep.any():
        raise InputDataError(f"{stem}: the voxel mask is empty on the maps' grid")
    stem = Path(stem)
    n_resampled = n_nonfinite = n_averaged = 0
    with atomic_write(f"{stem}.npy", "wb") as handle:  # streamed row by row, as float32
        np.lib.format.write_array_header_1_0(handle, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False, "shape": (len(maps), int(keep.sum()))})
        for paths in maps["paths"]:
            data, _, resampled = _mean_map(paths, grid)
            n_resampled += resampled
            n_averaged += len(paths) > 1
            volume = block_downsample(data, downsample)[keep]
            bad = ~np.isfinite(volume)
            n_nonfinite += bool(bad.any())
            volume[bad] = 0.0
            handle.write(np.ascontiguousarray(volume, dtype=np.float32).tobytes())
    if n_resampled:
        notes.append(f"{n_resampled} map(s) resampled (linear) onto the grid of the first map")
    if n_averaged:
        notes.append(f"{n_averaged} participant-session(s) had several maps: averaged")
    if n_nonfinite:
        notes.append(f"{n_nonfinite} map(s) had non-finite values in the mask: set to 0")
    out_affine = downsampled_affine(affine, downsample)
    save_nifti(nib.Nifti1Image(keep.astype(np.uint8), out_affine), f"{stem}_mask.nii.gz")
    rows = maps[KEY_COLUMNS].assign(source=[";".join(p) for p in maps["paths"]])
    with atomic_write(f"{stem}_rows.tsv") as handle:
        rows.to_csv(handle, sep="\t", index=False)
    meta = {"Space": TEMPLATE_SPACE, "Shape": list(keep.shape), "NVoxels": int(keep.sum()),
            "Downsample": int(downsample), "Mask": mask if isinstance(mask, str) else "given",
            "Dtype": "float32", "Notes": notes}
    write_json(f"{stem}.json", meta)
    return VoxelData.load(stem)


def sphere(shape: tuple[int, int, int], centre, radius: float) -> np.ndarray:
    """Return a bool ball of ``radius`` voxels around ``centre`` on a grid of ``shape``."""
    grid = np.indices(shape, dtype=np.float32)
    centre = np.asarray(centre, dtype=np.float32).reshape(3, 1, 1, 1)
    return ((grid - centre) ** 2).sum(axis=0) <= radius**2


def simulate_voxel_cohort(
    n: int,
    shape: tuple[int, int, int] = (16, 20, 16),
    *,
    n_sites: int = 3,
    effect: float = 0.0,
    region_centre=None,
    region_radius: float = 3.0,
    site_shift: float = 0.5,
    label_balance=None,
    atrophy_rate: float = 0.0,
    age_range: tuple[float, float] = (20.0, 80.0),
    noise_sd: float = 1.0,
    smoothing: float = 1.0,
    voxel_size: float = 4.0,
    seed: int = 0,
) -> tuple[VoxelData, pd.DataFrame, np.ndarray]:
    """Simulate GM-like maps with a planted group effect, site effects and ageing.

    Each map is ``baseline * (1 - atrophy_rate * (age - mean age)) - effect * diagnosis
    * region + site offset + noise``, inside an ellipsoidal brain mask: the baseline is
    a smooth fixed pattern (mean 1), the noise Gaussian white noise smoothed by
    ``smoothing`` voxels and rescaled to ``noise_sd``, each site adds its own offset
    and multiplies by its own gain (``site_shift``).

    Parameters
    ----------
    n : int
        Participants.
    shape : tuple of int
        Grid.
    n_sites : int
        Sites, assigned in turn.
    effect : float
        Decrease of the planted region in patients (``diagnosis == "patient"``).
    region_centre, region_radius
        The planted ball (default: centred in the left half of the grid).
    site_shift : float
        Scale of the site offsets and gains.
    label_balance : sequence of float, optional
        Probability of ``"patient"`` at each site (default 0.5 everywhere).
    atrophy_rate : float
        Fractional loss per year of age, relative to the mean age.
    age_range : tuple of float
        Ages are uniform in this range.
    noise_sd, smoothing : float
        Noise amplitude and smoothing (voxels).
    voxel_size : float
        mm, for the affine (origin at the grid centre).
    seed : int
        Random seed.

    Returns
    -------
    data : VoxelData
        In-memory values ``(n, n_voxels)``.
    participants : pandas.DataFrame
        ``participant_id``, ``site``, ``diagnosis``, ``age`` indexed by row label.
    region : numpy.ndarray
        3D bool mask of the planted region.
    """
    rng = np.random.default_rng(seed)
    centre = (np.asarray(shape) - 1) / 2.0
    grid = np.indices(shape, dtype=np.float32)
    radii = np.asarray(shape, dtype=np.float32).reshape(3, 1, 1, 1) * 0.45
    brain = (((grid - centre.reshape(3, 1, 1, 1)) / radii) ** 2).sum(axis=0) <= 1.0
    if region_centre is None:
        region_centre = (shape[0] * 0.3, shape[1] * 0.5, shape[2] * 0.5)
    region = sphere(shape, region_centre, region_radius) & brain
    baseline = gaussian_filter(rng.normal(size=shape), 2.0)
    baseline = 1.0 + 0.2 * baseline / baseline.std()
    sites = np.arange(n) % n_sites
    balance = np.full(n_sites, 0.5) if label_balance is None else np.asarray(label_balance)
    diagnosis = rng.random(n) < balance[sites]
    age = rng.uniform(*age_range, size=n)
    offsets = rng.normal(scale=site_shift, size=n_sites)
    gains = 1.0 + rng.uniform(-0.5, 0.5, size=n_sites) * site_shift
    values = np.empty((n, int(brain.sum())), dtype=np.float32)
    for i in range(n):
        noise = gaussian_filter(rng.normal(size=shape), smoothing) if smoothing else \
            rng.normal(size=shape)
        volume = baseline * (1.0 - atrophy_rate * (age[i] - np.mean(age_range)))
        volume = volume - effect * diagnosis[i] * region + noise_sd * noise / noise.std()
        values[i] = (volume * gains[sites[i]] + offsets[sites[i]])[brain]
    rows = pd.DataFrame({"participant_id": [f"sub-{i:05d}" for i in range(n)],
                         "session_id": NO_SESSION})
    affine = np.diag([voxel_size] * 3 + [1.0])
    affine[:3, 3] = -centre * voxel_size
    data = VoxelData(values, brain, affine, rows)
    participants = pd.DataFrame(
        {"participant_id": rows["participant_id"].to_numpy(),
         "site": [f"site{s}" for s in sites],
         "diagnosis": np.where(diagnosis, "patient", "control"), "age": age},
        index=data.labels)
    return data, participants, region


__all__ = [
    "VOXEL_KINDS",
    "VoxelData",
    "block_downsample",
    "downsampled_affine",
    "find_voxel_maps",
    "gather_voxel_maps",
    "parse_voxel_kind",
    "simulate_voxel_cohort",
    "sphere",
]
