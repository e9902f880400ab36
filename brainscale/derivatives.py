"""One way to write derivatives: BIDS entities -> path, atomic writes, JSON sidecars.

Every output file of BrainScale goes through :func:`build_path` and is written with
:func:`atomic_write` (a file object) or :func:`atomic_path` (a file name), both a uniquely
named temporary file in the destination folder, then ``os.replace``, so a killed run never
leaves a half-written file and several array tasks can write into one ``output_dir`` at the
same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from brainscale import __codeurl__, __version__
from brainscale.errors import OutputError, UsageError

#: BIDS entities in the order they appear in a file name (BIDS specification, appendix).
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "ce", "trc", "stain", "rec", "dir",
    "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "cohort",
    "res", "den", "atlas", "roi", "label", "from", "to", "mode", "model", "param", "bundle",
    "meas", "stat", "desc",
)
#: Entities copied from a raw source file into its derivatives' names.
SOURCE_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo")
DATATYPES = ("anat", "func", "dwi", "fmap", "perf", "figures", "")
_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_SUFFIX = re.compile(r"^[A-Za-z0-9]+$")
_ENTITY_PAIR = re.compile(r"^([A-Za-z]+)-([A-Za-z0-9]+)$")


def parse_entities(filename: str | os.PathLike) -> dict[str, str]:
    """Parse the ``key-value`` entities of a BIDS file name.

    Parameters
    ----------
    filename : path-like
        A BIDS (or BIDS-Derivatives) file name or path.

    Returns
    -------
    dict
        Entities in name order, plus ``suffix`` and ``extension``.

    Examples
    --------
    >>> parse_entities("sub-01/func/sub-01_task-rest_run-2_bold.nii.gz")["run"]
    '2'
    """
    name = Path(filename).name
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        match = _ENTITY_PAIR.match(part)
        if match:
            entities[match.group(1)] = match.group(2)
    entities["suffix"] = parts[-1]
    entities["extension"] = f"{dot}{ext}"
    return entities


def build_path(
    entities: Mapping[str, Any],
    suffix: str,
    extension: str,
    datatype: str,
) -> Path:
    """Build the relative path of a derivative from its entities.

    Parameters
    ----------
    entities : mapping
        BIDS entities; ``sub`` is required, ``None``/empty values are left out.
        Unknown entity names are an error.
    suffix : str
        BIDS suffix (``T1w``, ``bold``, ``relmat``, ...).
    extension : str
        File extension with its leading dot (``.nii.gz``, ``.tsv``, ``.json``).
    datatype : str
        ``anat``, ``func``, ``dwi``, ``figures`` (``figures`` sits next to the session
        folders, at ``sub-<label>/figures/``) or ``""`` for the subject folder.

    Returns
    -------
    pathlib.Path
        ``sub-<label>/[ses-<label>/]<datatype>/<name>`` relative to the output folder.

    Raises
    ------
    brainscale.errors.UsageError
        For a missing subject, an unknown entity, or a label with characters BIDS forbids.
    """
    values = {k: str(v) for k, v in entities.items() if v not in (None, "")}
    unknown = sorted(set(values) - set(ENTITY_ORDER))
    if unknown:
        raise UsageError(f"unknown BIDS entities {unknown} for a {suffix} derivative")
    if "sub" not in values:
        raise UsageError(f"a {suffix} derivative needs a 'sub' entity, got {values}")
    for key, value in values.items():
        if not _LABEL.match(value):
            raise UsageError(f"BIDS label {key}-{value!r} must be alphanumeric")
    if not _SUFFIX.match(suffix):
        raise UsageError(f"BIDS suffix {suffix!r} must be alphanumeric")
    if datatype not in DATATYPES:
        raise UsageError(f"unknown datatype {datatype!r}; expected one of {DATATYPES}")
    if extension and not extension.startswith("."):
        extension = f".{extension}"
    name = "_".join(f"{key}-{values[key]}" for key in ENTITY_ORDER if key in values)
    folder = Path(f"sub-{values['sub']}")
    if "ses" in values and datatype != "figures":
        folder /= f"ses-{values['ses']}"
    if datatype:
        folder /= datatype
    return folder / f"{name}_{suffix}{extension}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Give a writer a temporary path beside ``path`` and move the file into place on success.

    For writers that take a file name, not a file object (a nilearn display, an image
    library). The temporary name is unique (``.<name>.<random>.tmp``), so several processes
    writing one file at once each write their own copy and the last ``os.replace`` wins;
    readers only ever see a complete file.

    Parameters
    ----------
    path : path-like
        Final destination. Parent folders are created.

    Yields
    ------
    pathlib.Path
        The temporary file to write (it exists, empty). When the block ends, its data are
        flushed to disk and it replaces ``path``; on an exception it is removed and
        ``path`` is left untouched.

    Raises
    ------
    OutputError
        The destination folder cannot be created or written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and move it into place on success.

    Parameters
    ----------
    path : path-like
        Final destination. Parent folders are created.
    mode : {"w", "wb"}
        Text or binary mode.

    Yields
    ------
    file object
        The temporary file to write to (see :func:`atomic_path`). On an exception it is
        removed and ``path`` is left untouched.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_json(path: str | os.PathLike, content: Mapping[str, Any]) -> Path:
    """Write a JSON document atomically (sorted keys, indented).

    Parameters
    ----------
    path : path-like
        Destination.
    content : mapping
        JSON-serialisable content; NumPy scalars and paths are converted.

    Returns
    -------
    pathlib.Path
        The destination.
    """
    with atomic_write(path) as handle:
        json.dump(content, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file atomically, compressing NIfTI when ``dst`` ends in ``.nii.gz``.

    Parameters
    ----------
    src, dst : path-like
        Source and destination files.

    Returns
    -------
    pathlib.Path
        The destination.
    """
    src, dst = Path(src), Path(dst)
    if dst.name.endswith(".nii.gz") and src.name.endswith(".nii"):
        import gzip

        with atomic_write(dst, "wb") as out, open(src, "rb") as raw:
            with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as zipped:
                shutil.copyfileobj(raw, zipped)
        return dst
    with atomic_write(dst, "wb") as out, open(src, "rb") as raw:
        shutil.copyfileobj(raw, out)
    return dst


@contextlib.contextmanager
def locked(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``output_dir`` (for shared files).

    Parameters
    ----------
    output_dir : path-like
        Derivatives folder; the lock file is ``.brainscale.lock`` inside it.
    """
    lock_path = Path(output_dir) / ".brainscale.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def container_info() -> dict[str, str] | None:
    """Describe the container BrainScale runs in, if any.

    Returns
    -------
    dict or None
        ``{"Type": "docker"|"singularity", "Tag": ...}`` or ``None`` outside containers.
    """
    if os.environ.get("SINGULARITY_CONTAINER") or os.environ.get("APPTAINER_CONTAINER"):
        image = os.environ.get("SINGULARITY_CONTAINER") or os.environ["APPTAINER_CONTAINER"]
        return {"Type": "singularity", "URI": image}
    # Only BrainScale's own image sets the tag: another container (a CI runner, a
    # development box with /.dockerenv) running a plain virtual environment is not it.
    if os.environ.get("BRAINSCALE_CONTAINER_TAG"):
        return {"Type": "docker", "Tag": os.environ["BRAINSCALE_CONTAINER_TAG"]}
    return None


def write_dataset_description(output_dir: str | os.PathLike, bids_dir: str | os.PathLike) -> Path:
    """Write ``dataset_description.json`` of the derivatives, idempotently and safely.

    Concurrent array tasks take a lock, merge their ``SourceDatasets`` with what is
    already there and replace the file atomically, so the file is always complete.

    Parameters
    ----------
    output_dir : path-like
        Derivatives folder.
    bids_dir : path-like
        The raw dataset these derivatives come from.

    Returns
    -------
    pathlib.Path
        Path of the written file.
    """
    output_dir = Path(output_dir)
    path = output_dir / "dataset_description.json"
    generated = {"Name": "BrainScale", "Version": __version__, "CodeURL": __codeurl__}
    container = container_info()
    if container:
        generated["Container"] = container
    source = {"URL": Path(bids_dir).resolve().as_uri()}
    raw_description = Path(bids_dir) / "dataset_description.json"
    if raw_description.is_file():
        with contextlib.suppress(ValueError, OSError):
            raw = json.loads(raw_description.read_text())
            if raw.get("DatasetDOI"):
                source["DOI"] = raw["DatasetDOI"]
            if raw.get("Name"):
                source["Name"] = raw["Name"]
    with locked(output_dir):
        current: dict[str, Any] = {}
        if path.is_file():
            with contextlib.suppress(ValueError, OSError):
                current = json.loads(path.read_text())
        sources = [s for s in current.get("SourceDatasets", []) if s.get("URL") != source["URL"]]
        description = {
            "Name": "BrainScale derivatives",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [generated],
            "SourceDatasets": sources + [source],
            "DatasetLinks": {"raw": source["URL"]},
            "HowToAcknowledge": "Cite BrainScale and the tools listed in logs/CITATION.md.",
        }
        if description != current:
            write_json(path, description)
    return path


def bids_uri(path: str | os.PathLike, bids_dir: str | os.PathLike | None) -> str:
    """Express a raw input file as a BIDS URI (``bids:raw:<relative path>``).

    Parameters
    ----------
    path : path-like
        Input file.
    bids_dir : path-like or None
        Root of the raw dataset; when ``path`` is outside it, the absolute path is used.

    Returns
    -------
    str
        The BIDS URI or the absolute path.
    """
    path = Path(path).resolve()
    if bids_dir is not None:
        with contextlib.suppress(ValueError):
            return f"bids:raw:{path.relative_to(Path(bids_dir).resolve()).as_posix()}"
    return str(path)


def find_bids_root(path: str | os.PathLike) -> Path | None:
    """Return the closest parent folder that holds a ``dataset_description.json``."""
    for parent in Path(path).resolve().parents:
        if (parent / "dataset_description.json").is_file():
            return parent
    return None


def shared_source_entities(source_files: Sequence[str | os.PathLike]) -> dict[str, str]:
    """Entities of :data:`SOURCE_ENTITIES` that every source file has with the same value.

    Parameters
    ----------
    source_files : sequence of path-like
        Raw BIDS files (at least one).

    Returns
    -------
    dict
        Entities in name order; those the files differ in (``dir`` of a dir-AP/dir-PA
        pair) are left out.

    Examples
    --------
    >>> shared_source_entities(["sub-02_dir-AP_dwi.nii.gz", "sub-02_dir-PA_dwi.nii.gz"])
    {'sub': '02'}
    """
    entity_sets = [parse_entities(f) for f in source_files]
    first = entity_sets[0]
    return {
        k: first[k]
        for k in SOURCE_ENTITIES
        if k in first and all(e.get(k) == first[k] for e in entity_sets[1:])
    }


def save_derivative(
    in_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    source_file: str | os.PathLike | Sequence[str | os.PathLike],
    suffix: str,
    extension: str,
    datatype: str,
    entities: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Copy one result into the derivatives tree, with its JSON sidecar.

    Parameters
    ----------
    in_file : path-like
        The file a workflow produced (in the work directory).
    output_dir : path-like
        Derivatives folder.
    source_file : path-like or sequence of path-like
        The raw BIDS file it derives from: its subject/session/task/run entities are
        reused and it is recorded under ``Sources``. A result that combines several raw
        files (e.g. the dir-AP and dir-PA series of a session) names them all: it keeps
        the entities they share and lists every file under ``Sources``.
    suffix, extension, datatype : str
        See :func:`build_path`.
    entities : mapping, optional
        Derivative entities (``space``, ``desc``, ``atlas``, ``meas``...).
    meta : mapping, optional
        Extra sidecar content. Figures get a sidecar only when ``meta`` is given.

    Returns
    -------
    pathlib.Path
        The written derivative.
    """
    sources = (
        [source_file] if isinstance(source_file, (str, os.PathLike)) else list(source_file)
    )
    if not sources:
        raise UsageError(f"a {suffix} derivative needs at least one source file")
    merged = shared_source_entities(sources)
    merged.update({k: v for k, v in (entities or {}).items() if v not in (None, "")})
    out = Path(output_dir) / build_path(merged, suffix, extension, datatype)
    copy_atomic(in_file, out)
    if datatype == "figures" and not meta:
        return out
    sidecar = {"Sources": [bids_uri(src, find_bids_root(src)) for src in sources]}
    sidecar.update(meta or {})
    if extension not in (".json", ".bval", ".bvec"):
        write_json(out.with_name(out.name[: -len(extension)] + ".json"), sidecar)
    return out
