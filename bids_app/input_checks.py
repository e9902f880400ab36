"""Checks of a participant's input files before any graph runs.

Every image a node would read is checked here first, cheaply, so that a corrupt file
ends as one line naming it (exit 65) instead of a crash deep inside a node:

- the NIfTI header is sane: dimensions, voxel sizes, scaling and affine, and the
  declared data size is possible for the file (a 104-byte ``.nii.gz`` cannot hold
  20000^3 voxels: deflate never compresses more than ~1032:1);
- the data are read once, streamed in chunks (bounded memory): a truncated or corrupt
  gzip, missing bytes, NaN or infinite values and a constant image are found;
- ``.bval``/``.bvec`` files match the number of DWI volumes;
- JSON sidecars parse (a malformed one is its participant's problem only).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from brainscale.errors import InputDataError

if TYPE_CHECKING:
    from brainscale.bids_app.subject_data import SubjectData

MAX_DIMENSION = 4096
"""Largest plausible size of one spatial image axis (voxels)."""
MAX_VOLUMES = 100_000
"""Largest plausible number of volumes (an hour at TR 0.1 s is 36,000)."""
MAX_VOXEL_MM = 100.0
"""Largest plausible voxel size (mm)."""
MAX_DEFLATE_RATIO = 1100
"""Deflate's ceiling is about 1032:1; a header declaring more data than that is corrupt."""
_CHUNK_BYTES = 16 * 2**20
_IGNORED_TOP = ("derivatives", "sourcedata", "code", "stimuli", "models")


def header_problem(img, path: Path) -> str | None:
    """Check a NIfTI header without reading the data.

    Parameters
    ----------
    img : nibabel.Nifti1Image or nibabel.Nifti2Image
        The image (header read only).
    path : pathlib.Path
        Its file (for the size check).

    Returns
    -------
    str or None
        What is wrong, or ``None``.
    """
    header = img.header
    shape = tuple(int(s) for s in img.shape)
    if (not shape or min(shape) < 1 or max(shape[:3]) > MAX_DIMENSION
            or any(n > MAX_VOLUMES for n in shape[3:])):
        return f"implausible dimensions {shape} in the header"
    zooms = np.asarray(header.get_zooms()[:3], dtype=float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0) or np.any(zooms > MAX_VOXEL_MM):
        return f"implausible voxel sizes {tuple(float(z) for z in zooms)} mm in the header"
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        return "the affine (sform/qform) has non-finite values"
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        return "the affine (sform/qform) is singular (determinant 0)"
    slope, inter = header.get_slope_inter()
    if any(v is not None and not np.isfinite(v) for v in (slope, inter)):
        return f"non-finite intensity scaling (scl_slope={slope}, scl_inter={inter})"
    declared = _declared_bytes(img)
    size = path.stat().st_size
    if path.name.endswith(".gz"):
        if declared > MAX_DEFLATE_RATIO * size:
            return (f"the header declares {declared:,} bytes of data, impossible in a "
                    f"{size:,}-byte gzip file (truncated or corrupt)")
    elif size < declared:
        return f"the header declares {declared:,} bytes of data but the file has {size:,}"
    return None


def _data_offset(img) -> int:
    """Byte offset of the data in the file (the header's in-memory copy may say 0)."""
    return int(getattr(img.dataobj, "offset", 0) or img.header.get("vox_offset", 0))


def _declared_bytes(img) -> int:
    itemsize = img.header.get_data_dtype().itemsize
    return _data_offset(img) + int(np.prod(img.shape, dtype=np.int64)) * itemsize


def data_problem(img, path: Path) -> str | None:
    """Read the data once, in chunks, and check that they are complete and usable.

    Parameters
    ----------
    img : nibabel.Nifti1Image or nibabel.Nifti2Image
        The image (its header gives the data type and layout).
    path : pathlib.Path
        Its file.

    Returns
    -------
    str or None
        What is wrong (truncated, NaN/inf voxels, constant), or ``None``.
    """
    header = img.header
    dtype = header.get_data_dtype()
    offset = _data_offset(img)
    expected = int(np.prod(img.shape, dtype=np.int64)) * dtype.itemsize
    opener = gzip.open if path.name.endswith(".gz") else open
    floating = dtype.kind in "fc"
    low, high, non_finite, read = np.inf, -np.inf, 0, 0
    rest = b""
    try:
        with opener(path, "rb") as handle:
            handle.seek(offset)
            while read < expected:
                chunk = handle.read(min(_CHUNK_BYTES, expected - read))
                if not chunk:
                    break
                read += len(chunk)
                buffer = rest + chunk
                usable = len(buffer) - len(buffer) % dtype.itemsize
                values, rest = np.frombuffer(buffer[:usable], dtype=dtype), buffer[usable:]
                if dtype.fields is not None or values.size == 0:
                    continue
                if floating:
                    finite = np.isfinite(values)
                    non_finite += int(values.size - np.count_nonzero(finite))
                    values = values[finite]
                if values.size:
                    values = values.real if dtype.kind == "c" else values
                    low, high = min(low, float(values.min())), max(high, float(values.max()))
    except (OSError, EOFError, zlib.error) as err:
        return f"the data cannot be read: {type(err).__name__}: {err} (truncated or corrupt)"
    if read < expected:
        return f"truncated: {read:,} of {expected:,} data bytes present"
    if non_finite:
        return f"{non_finite:,} voxel value(s) are NaN or infinite"
    if dtype.fields is None and low == high:
        return f"the image is constant (every voxel is {low:g})"
    return None


def image_problem(path: str, ndim: int) -> str | None:
    """Check one input image: existence, header sanity, expected dimensionality, data.

    Parameters
    ----------
    path : str
        The image file.
    ndim : {3, 4}
        3 for a structural image (a 4D file with one volume is accepted), 4 for a series.

    Returns
    -------
    str or None
        What is wrong, or ``None``.
    """
    file = Path(path)
    if not file.exists():
        return "file does not exist (broken link?)"
    if file.stat().st_size == 0:
        return "file is empty (0 bytes)"
    try:
        img = nib.load(str(file))
        shape = img.shape
    except Exception as err:  # nibabel raises many types for corrupt files
        return f"cannot be read as NIfTI ({type(err).__name__}: {err})"
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        return f"not a NIfTI image ({type(img).__name__})"
    problem = header_problem(img, file)
    if problem:
        return problem
    if ndim == 3 and not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        return f"expected a 3D image, got shape {shape}"
    if ndim == 4 and (len(shape) != 4 or shape[3] < 2):
        return f"expected a 4D series, got shape {shape}"
    return data_problem(img, file)


def gradient_problem(dwi_path: str, bval: str, bvec: str) -> str | None:
    """Check that a DWI series' ``.bval`` and ``.bvec`` match its volumes.

    Parameters
    ----------
    dwi_path, bval, bvec : str
        The series and its gradient files.

    Returns
    -------
    str or None
        What is wrong, or ``None``.
    """
    n_volumes = nib.load(dwi_path).shape[3]
    try:
        bvals = np.loadtxt(bval, ndmin=1, dtype=float).ravel()
        bvecs = np.loadtxt(bvec, ndmin=2, dtype=float)
    except (OSError, ValueError) as err:
        return f"gradient files cannot be read as numbers ({err})"
    if bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T
    if bvals.size != n_volumes:
        return f"{Path(bval).name} lists {bvals.size} b-values for {n_volumes} volumes"
    if bvecs.shape != (3, n_volumes):
        return (f"{Path(bvec).name} has shape {bvecs.shape}, expected 3 rows of "
                f"{n_volumes} values")
    if not (np.all(np.isfinite(bvals)) and np.all(np.isfinite(bvecs))) or np.any(bvals < 0):
        return "gradient files hold negative or non-finite values"
    return None


def find_malformed_sidecars(bids_dir: Path) -> dict[Path, str]:
    """Find the JSON files of a dataset that do not parse.

    Parameters
    ----------
    bids_dir : pathlib.Path
        Dataset root (``derivatives/``, ``sourcedata/``, ``code/`` and hidden folders are
        not scanned, as pybids does not index them).

    Returns
    -------
    dict
        ``{path: problem}`` for every malformed JSON file.
    """
    bad = {}
    for root, dirs, files in os.walk(bids_dir):
        top = Path(root) == bids_dir
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (top and d in _IGNORED_TOP)]
        for name in files:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = Path(root) / name
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                bad[path] = f"malformed JSON sidecar ({err})"
            except OSError as err:
                bad[path] = f"unreadable JSON sidecar ({err.strerror or err})"
    return bad


def sidecar_problems(malformed: dict[Path, str], bids_dir: Path, subject: str) -> list[str]:
    """Return the malformed sidecars that concern one participant.

    A file under ``sub-<label>/`` concerns that participant only; one outside any
    participant folder (e.g. a top-level ``task-rest_bold.json``) is inherited by every
    participant.

    Parameters
    ----------
    malformed : dict
        From :func:`find_malformed_sidecars`.
    bids_dir : pathlib.Path
        Dataset root.
    subject : str
        Participant label.

    Returns
    -------
    list of str
        ``"<file>: <problem>"`` lines.
    """
    lines = []
    for path, problem in sorted(malformed.items()):
        first = path.relative_to(bids_dir).parts[0]
        if first == f"sub-{subject}" or not first.startswith("sub-"):
            lines.append(f"{path}: {problem}")
    return lines


def check_input_files(data: SubjectData, modalities: tuple[str, ...]) -> list[str]:
    """Check that each selected input image can be read and has the right shape.

    Headers are checked for sanity before the data are read once, streamed (see
    :func:`image_problem`); every problem is reported, one per file.

    Parameters
    ----------
    data : SubjectData
        The participant's inputs.
    modalities : tuple of str
        Parts that will run (only their inputs are checked).

    Returns
    -------
    list of str
        Problems, each ``"<file>: <what is wrong>"``; empty when all inputs are usable.
    """
    problems = []
    expected: list[tuple[str, int]] = []
    if "anat" in modalities or "func" in modalities or "dwi" in modalities:
        expected += [(path, 3) for path in data.t1w]
    if "func" in modalities:
        expected += [(run.path, 4) for run in data.bold]
    if "dwi" in modalities:
        expected += [(s.path, 4) for series in data.dwi.values() for s in series]
    if "func" in modalities:
        for run in data.bold:
            if run.fieldmap:
                expected += [(run.fieldmap["phasediff"], 3), (run.fieldmap["magnitude"], 3)]
    unusable = set()
    for path, ndim in dict.fromkeys(expected):
        problem = image_problem(path, ndim)
        if problem:
            problems.append(f"{path}: {problem}")
            unusable.add(path)
    if "func" in modalities:
        for run in data.bold:
            if "RepetitionTime" not in run.metadata:
                problems.append(f"{run.path}: RepetitionTime missing from the JSON sidecar(s)")
    if "dwi" in modalities:
        for series in data.dwi.values():
            for s in series:
                for kind, gradient in (("bval", s.bval), ("bvec", s.bvec)):
                    if gradient is None:
                        problems.append(
                            f"{s.path}: no .{kind} file found (BIDS inheritance included)"
                        )
                if s.bval and s.bvec and s.path not in unusable:
                    problem = gradient_problem(s.path, s.bval, s.bvec)
                    if problem:
                        problems.append(f"{s.path}: {problem}")
    return problems


def raise_for_problems(subject: str, problems: list[str]) -> None:
    """Raise one :class:`InputDataError` listing every problem of a participant.

    Parameters
    ----------
    subject : str
        Participant label.
    problems : list of str
        From :func:`check_input_files`.
    """
    if problems:
        raise InputDataError(
            f"sub-{subject}: {len(problems)} unusable input file(s):\n  " + "\n  ".join(problems)
        )
