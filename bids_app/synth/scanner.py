"""The synthetic sites' scanners and the NIfTI files they write.

Vendor, intensity gain, noise and bias field; images written as dcm2niix writes them
(qform and sform set), gzipped without a timestamp.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brainscale.writers import save_nifti as write_nifti


def site_scanner(site: int) -> dict:
    """Return the scanner of a site (sites beyond the third reuse the list in turn).

    Parameters
    ----------
    site : int
        Zero-based site number.

    Returns
    -------
    dict
        ``Manufacturer`` and ``ManufacturersModelName`` (BIDS sidecar fields), ``gain``
        (intensity scale), ``noise`` (Gaussian noise SD before the gain) and ``bias``
        (coefficients of the exponential bias field, per 100 mm along x, y, z).
    """
    scanners = [
        {"Manufacturer": "Siemens", "ManufacturersModelName": "Prisma", "gain": 1000.0,
         "noise": 0.02, "bias": (0.15, 0.0, 0.05)},
        {"Manufacturer": "GE", "ManufacturersModelName": "Discovery MR750", "gain": 1400.0,
         "noise": 0.03, "bias": (-0.05, 0.15, 0.0)},
        {"Manufacturer": "Philips", "ManufacturersModelName": "Achieva", "gain": 800.0,
         "noise": 0.025, "bias": (0.0, -0.1, 0.12)},
    ]
    return scanners[site % len(scanners)]


def bias_field(shape, affine, coefficients) -> np.ndarray:
    """Return the multiplicative bias field ``exp(c . x / 100)`` on a grid.

    Parameters
    ----------
    shape, affine
        The grid (``affine`` maps voxels to world mm).
    coefficients : sequence of 3 floats
        Log-gain per 100 mm along world x, y, z.

    Returns
    -------
    numpy.ndarray
        float32 field of ``shape``.
    """
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]) / 100.0
    field = np.exp(np.tensordot(np.asarray(coefficients, dtype=np.float32), world, axes=1))
    return field.reshape(shape).astype(np.float32)


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, zooms_t: float | None = None):
    """Write an image atomically, with qform and sform code 1 and units mm and s.

    Parameters
    ----------
    data : numpy.ndarray
        Voxel data.
    affine : numpy.ndarray
        Voxel-to-world matrix.
    path : pathlib.Path
        Destination; ``.gz`` names are compressed without a timestamp, so the same data
        give the same bytes.
    zooms_t : float, optional
        Fourth-dimension zoom (the repetition time of a series).
    """
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if zooms_t is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (zooms_t,))
    write_nifti(img, path)
