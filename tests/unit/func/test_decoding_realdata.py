"""Real data: ds-real-mini sub-01's one-back localizer decoded from ventral temporal cortex.

The six stimulus categories of the studyforrest localizer (faces, bodies, houses,
scenes, objects, scrambled; Sengupta et al. 2016) evoke distinct response patterns in
ventral temporal cortex (Haxby et al. 2001), so trial patterns of one run, decoded with
contiguous folds that keep a 16 s gap between training and test trials, must be above
chance (1/6) with a block-permutation p-value below 0.05.

To stay cheap the run is not resampled to the template: the BOLD reference is registered
affinely to the MNI template once (cached in ``$BRAINSCALE_CACHE`` or /tmp/bs_cache) and
the Desikan-Killiany ventral temporal parcels (fusiform, parahippocampal, inferior
temporal, lingual) are brought into the BOLD grid.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.func.decoding_analysis import RunData, decode_runs
from brainscale.workflows.func.decoding_features import (
    VENTRAL_TEMPORAL_REGIONS,
    atlas_on_native_grid,
    select_regions,
)
from brainscale.workflows.func.glm import read_events

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
CHANCE = 1 / 6


def oneback_registration(bold: nib.Nifti1Image, data: np.ndarray) -> dict:
    """BOLD reference, mask, head motion and the template-to-BOLD matrix (cached)."""
    from brainscale import resources
    from brainscale.workflows.func.motion import estimate_head_motion
    from brainscale.workflows.func.reference import (
        compute_bold_mask,
        compute_boldref,
        detect_nonsteady_states,
    )
    from brainscale.workflows.func.registration import register_boldref

    cache = Path(os.environ.get("BRAINSCALE_CACHE", "/tmp/bs_cache")) / "sub01_oneback_prep.npz"
    if cache.is_file():
        return dict(np.load(cache))
    n_nonsteady = detect_nonsteady_states(data)
    ref = compute_boldref(data, n_nonsteady)
    mask = np.asarray(compute_bold_mask(nib.Nifti1Image(ref, bold.affine)).dataobj) > 0
    params, _ = estimate_head_motion(data, bold.affine, ref, mask)
    with tempfile.TemporaryDirectory() as tmp:
        nib.save(nib.Nifti1Image(ref * mask, bold.affine), f"{tmp}/ref.nii.gz")
        template = resources.save_resource(resources.get_template(2), f"{tmp}/tpl.nii.gz")
        template_mask = resources.save_resource(resources.get_template_mask(2),
                                                f"{tmp}/mask.nii.gz")
        matrix = register_boldref(template, f"{tmp}/ref.nii.gz", f"{tmp}/xfm.mat",
                                  transform_type="Affine", fixed_mask_file=template_mask)
    prep = {"M": matrix, "params": params, "n0": n_nonsteady, "mask": mask}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **prep)
    return prep


@pytest.fixture(scope="module")
def ventral_temporal(ds_real_mini):
    from brainscale.resources import get_atlas

    func = ds_real_mini / "sub-01" / "func"
    bold = nib.load(func / "sub-01_task-oneback_bold.nii.gz")
    data = np.asarray(bold.dataobj, dtype=np.float32)
    prep = oneback_registration(bold, data)
    atlas = get_atlas("DesikanKilliany")
    atlas_img = atlas.load()
    labels = atlas_on_native_grid(atlas_img, bold.shape, bold.affine, prep["M"])
    regions = select_regions(atlas.labels, list(VENTRAL_TEMPORAL_REGIONS))
    inside = [(labels == index) & prep["mask"] for index in regions["index"]]
    assert all(m.sum() > 30 for m in inside), "a ventral temporal parcel is nearly empty"
    parcels = np.column_stack([data[m].mean(axis=0) for m in inside])
    voxels = data[np.any(inside, axis=0)].T.astype(float)
    events = read_events(func / "sub-01_task-oneback_events.tsv")
    return {"parcels": (parcels, regions["name"].tolist()),
            "voxels": (voxels, [f"v{k}" for k in range(voxels.shape[1])]),
            "events": events, "motion": prep["params"], "n0": int(prep["n0"])}


@pytest.mark.parametrize("space", ["parcels", "voxels"])
def test_oneback_categories_are_decoded_from_ventral_temporal_cortex(ventral_temporal, space):
    series, names = ventral_temporal[space]
    run = RunData(series, ventral_temporal["events"], 2.0, ventral_temporal["motion"],
                  ventral_temporal["n0"])
    analysis = decode_runs([run], feature_names=names, kind="lss", models=("logreg",),
                           n_permutations=100, seed=0)
    assert len(analysis.folds) == 2  # two blocks per category: the run's halves
    result = analysis.results[0]
    assert sorted(result.classes) == ["body", "face", "house", "object", "scene", "scramble"]
    assert result.chance == pytest.approx(CHANCE)
    for train, test in analysis.folds:  # the gap: no training trial within 16 s of a test one
        gap = np.abs(analysis.patterns.times[train][:, None]
                     - analysis.patterns.times[test][None, :]).min()
        assert gap >= 16.0
    assert result.balanced_accuracy > CHANCE + 0.08
    assert result.p_value < 0.05
