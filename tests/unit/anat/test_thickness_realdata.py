"""Cortical thickness, surfaces and area on every real adult T1w of ../shared/data (slow).

Bounds are published adult ranges, not this code's output:

* mean cortical thickness 2.3-3.0 mm: FreeSurfer's adult mean is about 2.5 mm, regional
  means 1-4.5 mm (Fischl & Dale, PNAS 97:11050, 2000); the volumetric methods that agree
  best with it report 2.3-2.9 mm (Dahnke et al., NeuroImage 65:336, 2013);
* primary motor cortex thicker than primary somatosensory cortex, and a thin
  pericalcarine cortex (von Economo 1925; Fischl & Dale 2000);
* total white-surface area of both hemispheres 1,500-2,000 cm2, FreeSurfer's adult range
  (Winkler et al., NeuroImage 61:1428, 2012; Hogstrom et al., Cereb Cortex 23:2521, 2013).
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.workflows.anat.surface_interfaces import load_shape, load_surface
from brainscale.workflows.anat.surface_thickness import MAX_THICKNESS_MM

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

FINE_VOXEL_MM = 1.2
"""Thickness ranges are asserted on images with voxels of at most this size."""


def _fine_t1w_images(root):
    images = []
    for path in sorted(root.glob("*/sub-*/anat/sub-*_T1w.nii.gz")):
        if max(nib.load(path).header.get_zooms()[:3]) <= FINE_VOXEL_MM:
            images.append(path)
    return images


def pytest_generate_tests(metafunc):
    if "anat_outputs" in metafunc.fixturenames:
        from tests.conftest import shared_data_dir

        root = shared_data_dir()
        images = _fine_t1w_images(root) if root.is_dir() else []
        metafunc.parametrize("anat_outputs", images or [None], indirect=True, scope="module",
                             ids=[p.parent.parent.parent.name + "-" + p.parent.parent.name
                                  for p in images] or ["no-shared-data"])


@pytest.fixture(scope="module")
def anat_outputs(request, anat_run):
    """The anatomical outputs of one real T1w (the run is shared with other modules)."""
    t1w = request.param
    if t1w is None:
        pytest.skip("../shared/data is absent")
    return t1w.name.split("_")[0], anat_run(t1w)


def _tables(anat, sub):
    brain = pd.read_csv(anat / f"{sub}_desc-brain_morph.tsv", sep="\t").iloc[0]
    regional = pd.read_csv(anat / f"{sub}_atlas-DesikanKilliany_morph.tsv", sep="\t")
    return brain, regional[regional["name"].str.startswith("ctx-")]


def test_mean_thickness_is_adult_and_rarely_capped(anat_outputs):
    sub, anat = anat_outputs
    brain, _ = _tables(anat, sub)
    assert 2.3 <= brain["surface_thickness_mean_mm"] <= 3.0
    assert 2.3 <= brain["thickness_mean_mm"] <= 3.0
    thickness = nib.load(anat / f"{sub}_desc-thickness_morph.nii.gz").get_fdata()
    cortex = thickness > 0
    assert np.mean(thickness[cortex] >= MAX_THICKNESS_MM - 1e-3) < 0.01
    dseg = np.asarray(nib.load(anat / f"{sub}_dseg.nii.gz").dataobj)
    assert np.all(dseg[cortex] == 2)  # grey matter only
    sidecar = json.loads((anat / f"{sub}_desc-thickness_morph.json").read_text())
    assert "Fischl" in sidecar["Method"] and "Warning" not in sidecar


def test_regional_thickness_follows_cortical_anatomy(anat_outputs):
    sub, anat = anat_outputs
    _, regional = _tables(anat, sub)
    region = regional["name"].str[7:]
    mean = regional.groupby(region)["surface_thickness_mean_mm"].mean()
    assert mean["precentral"] > mean["postcentral"]
    assert mean.rank()["pericalcarine"] <= len(mean) / 3  # among the thinnest third


def test_white_surface_area_is_adult(anat_outputs):
    sub, anat = anat_outputs
    brain, regional = _tables(anat, sub)
    total = brain["white_surface_area_mm2"]
    assert 150_000 <= total <= 200_000
    # every cortical vertex lies in some Desikan-Killiany region, or close to one
    assert 0.9 * total <= regional["surface_area_mm2"].sum() <= total + 1e-6
    assert (regional["surface_area_mm2"] > 0).all()
    meta = json.loads((anat / f"{sub}_atlas-DesikanKilliany_morph.json").read_text())
    assert "white-surface area" in meta["SurfaceAreaMethod"]


def test_meshes_are_written_per_hemisphere(anat_outputs):
    sub, anat = anat_outputs
    for hemi in ("L", "R"):
        white = load_surface(anat / f"{sub}_hemi-{hemi}_white.surf.gii")
        pial = load_surface(anat / f"{sub}_hemi-{hemi}_pial.surf.gii")
        thickness = load_shape(anat / f"{sub}_hemi-{hemi}_thickness.shape.gii")
        assert len(thickness) == len(white[0]) and len(pial[1]) > 10_000
        side = np.median(white[0][:, 0])
        assert side < 0 if hemi == "L" else side > 0  # RAS+: left is negative x
        assert json.loads((anat / f"{sub}_hemi-{hemi}_white.json").read_text())["Method"]
