"""Helpers shared by the thin Nipype interfaces of every modality."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import isdefined


def out_path(runtime, name: str) -> str:
    """Return the path of a file in the node's working directory.

    Parameters
    ----------
    runtime : nipype runtime
        The interface's runtime (its ``cwd`` is the node folder).
    name : str
        File name.

    Returns
    -------
    str
        Absolute path.
    """
    return os.path.join(runtime.cwd, name)


def defined_or_none(value, load=None):
    """Return an optional interface input, or ``None`` when it was left undefined.

    Parameters
    ----------
    value : object
        An input trait's value (``traits.Undefined`` when the input was not set).
    load : callable, optional
        Applied to a defined value (e.g. :func:`nibabel.load` for an image path).

    Returns
    -------
    object or None
        ``None`` for an undefined input; otherwise ``value``, or ``load(value)``. A defined
        but false value (``0``, ``""``, ``[]``) is returned as it is.
    """
    if not isdefined(value):
        return None
    return value if load is None else load(value)


def save_image(data: np.ndarray, affine: np.ndarray, path: str, dtype=np.float32) -> str:
    """Save an array as NIfTI with mm/s units and return the path.

    Parameters
    ----------
    data : numpy.ndarray
        Image data.
    affine : numpy.ndarray
        Voxel-to-world matrix.
    path : str
        Destination.
    dtype : numpy dtype
        Stored data type.

    Returns
    -------
    str
        ``path``.
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path
