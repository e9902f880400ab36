"""Run BrainScale on S3 URLs: stage inputs in to local scratch, stage outputs out on success.

``run.py s3://bucket/bids s3://bucket/derivatives participant`` (as on AWS Batch) is
turned into a run on local folders:

1. the participants under ``s3://bucket/bids/`` are listed and selected exactly as the
   local run would (``--participant-label``, then ``--array-index`` /
   ``AWS_BATCH_JOB_ARRAY_INDEX`` / ``SLURM_ARRAY_TASK_ID`` on the sorted list), and only
   the dataset-level files and the selected ``sub-*/`` folders are downloaded;
2. the group level (and ``--reports-only``) also downloads the existing derivatives;
3. BrainScale runs on the local copies;
4. when it exits with 0, every new or changed output file is uploaded, with
   ``dataset_description.json`` pointing at the S3 source instead of the scratch copy.
   On failure nothing is uploaded and the scratch folder is kept for inspection.

boto3 is imported only here, and this module only when an ``s3://`` URL is given.
Credentials and the endpoint come from boto3's usual sources (environment, instance or
task role, ``AWS_ENDPOINT_URL_S3`` for S3-compatible stores).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from brainscale.errors import NoInputError, OutputError, UsageError

LOGGER = logging.getLogger("brainscale")
S3_PREFIX = "s3://"
#: Files in an output folder that are never uploaded (locks, temporary files).
_PRIVATE = (".brainscale.lock",)


def is_s3_url(value: object) -> bool:
    """Tell whether a command-line value is an S3 URL.

    Parameters
    ----------
    value : object
        A command-line argument.

    Returns
    -------
    bool
        ``True`` for strings starting with ``s3://``.
    """
    return isinstance(value, str) and value.startswith(S3_PREFIX)


def split_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/some/prefix/`` into ``("bucket", "some/prefix")``.

    Parameters
    ----------
    url : str
        An S3 URL.

    Returns
    -------
    bucket : str
        Bucket name.
    prefix : str
        Key prefix without leading or trailing slashes (may be empty).

    Raises
    ------
    UsageError
        The URL has no bucket.
    """
    if not is_s3_url(url):
        raise UsageError(f"not an S3 URL: {url!r}")
    bucket, _, prefix = url[len(S3_PREFIX):].partition("/")
    if not bucket:
        raise UsageError(f"S3 URL without a bucket: {url!r} (expected s3://BUCKET/PREFIX)")
    return bucket, prefix.strip("/")


def _key(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix else relative


def make_client():
    """Create the boto3 S3 client (credentials and endpoint from the environment).

    Returns
    -------
    botocore.client.S3
        The client.
    """
    try:
        import boto3
    except ImportError as err:
        raise UsageError("s3:// URLs need boto3: pip install boto3") from err
    return boto3.client("s3")


def _client_errors():
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def list_objects(client, url: str) -> dict[str, int]:
    """List the objects under an S3 URL.

    Parameters
    ----------
    client : botocore.client.S3
        S3 client.
    url : str
        ``s3://bucket/prefix``.

    Returns
    -------
    dict
        Key relative to the prefix -> size in bytes ("folder" marker keys are left out).
    """
    bucket, prefix = split_s3_url(url)
    start = f"{prefix}/" if prefix else ""
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        for item in page.get("Contents", []):
            relative = item["Key"][len(start):]
            if relative and not relative.endswith("/"):
                objects[relative] = item["Size"]
    return objects


def list_participants(client, url: str) -> list[str]:
    """List the participant labels (``sub-<label>/`` folders) of a BIDS dataset on S3.

    Parameters
    ----------
    client : botocore.client.S3
        S3 client.
    url : str
        ``s3://bucket/prefix`` of the BIDS root.

    Returns
    -------
    list of str
        Sorted labels without ``sub-``.
    """
    bucket, prefix = split_s3_url(url)
    start = f"{prefix}/" if prefix else ""
    labels = set()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{start}sub-", Delimiter="/"
    )
    for page in pages:
        for common in page.get("CommonPrefixes", []):
            labels.add(common["Prefix"][len(start):].strip("/")[len("sub-"):])
    return sorted(label for label in labels if label)


def download_prefix(
    client, url: str, destination: Path, keep: Callable[[str], bool] | None = None
) -> list[Path]:
    """Download the objects under an S3 URL into a local folder.

    Parameters
    ----------
    client : botocore.client.S3
        S3 client.
    url : str
        ``s3://bucket/prefix``.
    destination : pathlib.Path
        Local folder; keys are written at their path relative to the prefix.
    keep : callable, optional
        Predicate on the relative key; objects for which it is false are skipped.

    Returns
    -------
    list of pathlib.Path
        Downloaded files.
    """
    bucket, prefix = split_s3_url(url)
    downloaded = []
    for relative in sorted(list_objects(client, url)):
        if keep is not None and not keep(relative):
            continue
        target = destination / relative
        if not target.resolve().is_relative_to(destination.resolve()):
            raise NoInputError(f"refusing to download {url}/{relative} outside {destination}")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, _key(prefix, relative), str(target))
        downloaded.append(target)
    return downloaded


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Record size and modification time of every file under a folder.

    Parameters
    ----------
    folder : pathlib.Path
        Folder to scan (missing: empty snapshot).

    Returns
    -------
    dict
        Relative POSIX path -> ``(size, mtime_ns)``.
    """
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def upload_changes(
    client, folder: Path, url: str, before: dict[str, tuple[int, int]] | None = None
) -> list[str]:
    """Upload the files of a folder that are new or changed since a snapshot.

    Parameters
    ----------
    client : botocore.client.S3
        S3 client.
    folder : pathlib.Path
        Local output folder.
    url : str
        ``s3://bucket/prefix`` to upload into.
    before : dict, optional
        :func:`snapshot` taken after stage-in; ``None`` uploads everything.

    Returns
    -------
    list of str
        Uploaded keys relative to the prefix.
    """
    bucket, prefix = split_s3_url(url)
    before = before or {}
    uploaded = []
    for relative, state in sorted(snapshot(folder).items()):
        name = relative.rsplit("/", 1)[-1]
        if name in _PRIVATE or (name.startswith(".") and name.endswith(".tmp")):
            continue
        if before.get(relative) == state:
            continue
        client.upload_file(str(folder / relative), bucket, _key(prefix, relative))
        uploaded.append(relative)
    return uploaded


def _point_description_at(output_dir: Path, local_bids: Path, bids_url: str) -> None:
    """Replace the scratch copy's file URI by the S3 URL in dataset_description.json."""
    from brainscale.derivatives import write_json

    path = output_dir / "dataset_description.json"
    if not path.is_file():
        return
    local_uri = local_bids.resolve().as_uri()
    text = path.read_text()
    if local_uri in text:
        write_json(path, json.loads(text.replace(local_uri, bids_url.rstrip("/"))))


#: Top-level folders of a BIDS dataset that BrainScale never reads (often large).
_NOT_STAGED = ("sourcedata", "derivatives")


def _keep_subjects(subjects: Iterable[str] | None) -> Callable[[str], bool]:
    wanted = None if subjects is None else {f"sub-{s}" for s in subjects}

    def keep(relative: str) -> bool:
        top = relative.split("/", 1)[0]
        if "/" in relative and top in _NOT_STAGED:
            return False
        if not top.startswith("sub-") or "/" not in relative:
            return True  # dataset-level files and folders (code/, stimuli/ ...)
        return wanted is not None and top in wanted

    return keep


def run_staged(
    argv: list[str],
    run: Callable[[list[str]], int],
    *,
    client=None,
    scratch: str | os.PathLike | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Run BrainScale with ``s3://`` URLs as ``bids_dir`` and/or ``output_dir``.

    Parameters
    ----------
    argv : list of str
        BIDS-App arguments; ``argv[0]`` (bids_dir) and/or ``argv[1]`` (output_dir) are
        S3 URLs.
    run : callable
        The local entry point (:func:`brainscale.bids_app.run.main`), called with local paths.
    client : botocore.client.S3, optional
        S3 client (default: :func:`make_client`).
    scratch : path-like, optional
        Where to stage (default: ``$BRAINSCALE_SCRATCH`` or the temp folder).
    environ : dict, optional
        Environment for the array index (default: ``os.environ``).

    Returns
    -------
    int
        The exit code of the local run (outputs are uploaded only when it is 0).

    Raises
    ------
    NoInputError
        The S3 input cannot be listed or read, or holds no participant.
    OutputError
        The outputs cannot be uploaded.
    """
    from brainscale.bids_app.bids_selection import select_array_task
    from brainscale.bids_app.cli import parse_args
    from brainscale.errors import NothingSelectedError

    if len(argv) < 3:
        raise UsageError("usage: run.py bids_dir output_dir participant|group [options]")
    environ = dict(os.environ if environ is None else environ)
    bids_url, out_url = (a if is_s3_url(a) else None for a in argv[:2])
    client = client or make_client()
    root = Path(scratch or environ.get("BRAINSCALE_SCRATCH") or tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="brainscale-s3-", dir=root))
    local_bids = staging / "bids" if bids_url else Path(argv[0])
    local_out = staging / "derivatives" if out_url else Path(argv[1])
    local_argv = [str(local_bids), str(local_out), *argv[2:]]
    config = parse_args(local_argv, environ)  # usage errors before any transfer
    ex = config.execution
    extra: list[str] = []
    errors = _client_errors()
    if bids_url:
        try:
            available = list_participants(client, bids_url)
            subjects = None
            if ex.analysis_level == "participant":
                subjects = available
                if ex.participant_label:
                    missing = sorted(set(ex.participant_label) - set(available))
                    if missing:
                        raise NothingSelectedError(
                            f"participant(s) {', '.join('sub-' + m for m in missing)} not "
                            f"found in {bids_url}"
                        )
                    subjects = sorted(set(ex.participant_label))
                if ex.array_index is not None:
                    subjects = select_array_task(subjects, ex.array_index)
                    extra = ["--participant-label", *subjects, "--array-index", "0"]
            LOGGER.info("staging %s (%s) into %s", bids_url,
                        "dataset files only" if subjects is None else
                        f"{len(subjects)} participant(s)", local_bids)
            files = download_prefix(client, bids_url, local_bids, _keep_subjects(subjects))
        except errors as err:
            raise NoInputError(f"cannot read the BIDS dataset at {bids_url}: {err}") from err
        if not files:
            raise NoInputError(f"no files under {bids_url}")
    if out_url and (ex.analysis_level == "group" or ex.reports_only):
        try:
            download_prefix(client, out_url, local_out)
        except errors as err:
            raise NoInputError(f"cannot read the derivatives at {out_url}: {err}") from err
    before = snapshot(local_out) if out_url else {}
    code = int(run(local_argv + extra))
    if code != 0:
        LOGGER.error("exit code %d: nothing uploaded; local copies kept in %s", code, staging)
        return code
    if out_url:
        if bids_url:
            _point_description_at(local_out, local_bids, bids_url)
        try:
            uploaded = upload_changes(client, local_out, out_url, before)
        except (*errors, OSError) as err:
            raise OutputError(f"cannot upload the outputs to {out_url}: {err}") from err
        LOGGER.info("uploaded %d file(s) to %s", len(uploaded), out_url)
    if not environ.get("BRAINSCALE_KEEP_SCRATCH"):
        shutil.rmtree(staging, ignore_errors=True)
    return code
