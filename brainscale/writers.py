"""Atomic writers of tables, text, NIfTI images and figures (every floor above uses them).

Every file goes through :func:`brainscale.derivatives.atomic_write` or
:func:`brainscale.derivatives.atomic_path` (a uniquely named temporary file beside the
destination, then ``os.replace``), so a killed run never leaves
a half-written file and concurrent writers of one file leave one complete copy and no
temporary debris.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import pandas as pd
from nibabel.openers import Opener

from brainscale.derivatives import atomic_path, atomic_write


def write_tsv(
    table: pd.DataFrame,
    path: str | os.PathLike,
    *,
    index: bool = False,
    float_format: str = "%.8g",
) -> Path:
    """Write a table as UTF-8 TSV, ``n/a`` for missing values, atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        The table.
    path : path-like
        Destination; parent folders are created.
    index : bool
        Write the index as the first column.
    float_format : str
        ``printf`` format of floating-point values.

    Returns
    -------
    pathlib.Path
        The destination.
    """
    with atomic_write(path, "wb") as handle:
        table.to_csv(
            handle, sep="\t", index=index, na_rep="n/a", float_format=float_format,
            encoding="utf-8",
        )
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write UTF-8 text atomically.

    Parameters
    ----------
    text : str
        Content.
    path : path-like
        Destination; parent folders are created.

    Returns
    -------
    pathlib.Path
        The destination.
    """
    with atomic_write(path, "wb") as handle:
        handle.write(text.encode("utf-8"))
    return Path(path)


def save_nifti(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Save a NIfTI image atomically, with the bytes :func:`nibabel.save` writes.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        The image.
    path : path-like
        Destination (``.nii`` or ``.nii.gz``, gzip-compressed like nibabel: no name in
        the gzip header, modification time 0, nibabel's default level).

    Returns
    -------
    pathlib.Path
        The destination.
    """
    with atomic_write(path, "wb") as handle:
        if str(path).endswith(".gz"):
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=handle,
                compresslevel=Opener.default_compresslevel, mtime=0,
            ) as zipped:
                img.to_file_map(img.make_file_map({"image": zipped, "header": zipped}))
        else:
            img.to_file_map(img.make_file_map({"image": handle, "header": handle}))
    return Path(path)


def save_figure(figure: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """Save a figure atomically (matplotlib is not imported here).

    Parameters
    ----------
    figure : matplotlib.figure.Figure or nilearn display
        Anything with a matplotlib-like ``savefig(fname, format=..., **kwargs)``.
    path : path-like
        Destination; parent folders are created. Its extension names the format (the
        temporary file's name does not), unless ``format`` is given; without either,
        matplotlib's default ``png``.
    **savefig_kwargs
        Passed to ``savefig`` (``bbox_inches``, ``dpi``...).

    Returns
    -------
    pathlib.Path
        The destination.
    """
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix[1:] or "png")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, **savefig_kwargs)
    return path
