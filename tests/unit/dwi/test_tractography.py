"""Whole tractography of a straight bundle: streamlines run along it, sidecars say how."""

import numpy as np
import pytest

from brainscale.workflows.dwi.tensor import fit_tensor
from brainscale.workflows.dwi.tracking import seed_points
from brainscale.workflows.dwi.tractography import reconstruct_tractograms

from .conftest import FIBRE_EVALS, gradient_scheme, tensor_signal

SHAPE = (30, 12, 5)
ZOOM = 2.0


@pytest.fixture(scope="module")
def bundle():
    """A bundle along x (y in 4..7) in isotropic tissue."""
    bvals, bvecs = gradient_scheme(45, 2000.0, n_b0=3)
    x, y, _ = np.indices(SHAPE)
    in_bundle = (y >= 4) & (y < 8) & (x >= 2) & (x < 28)
    data = np.empty((*SHAPE, len(bvals)), dtype=np.float32)
    data[:] = tensor_signal(bvals, bvecs, [("x", 1.0, np.full(3, 0.8e-3))])
    data[in_bundle] = tensor_signal(bvals, bvecs, [("x", 1.0, FIBRE_EVALS)])
    data *= 500.0
    mask = np.ones(SHAPE, dtype=bool)
    fa = fit_tensor(data, bvals, bvecs, mask)["fa"].astype(np.float32)
    return data, bvals, bvecs, mask, fa, np.diag([ZOOM, ZOOM, ZOOM, 1.0]), in_bundle


def _direction_along_x(streamlines):
    steps = np.concatenate([np.diff(np.asarray(s), axis=0) for s in streamlines])
    return np.abs(steps[:, 0]).sum() / np.linalg.norm(steps, axis=1).sum()


def test_fa_tractograms_follow_the_bundle(bundle):
    data, bvals, bvecs, mask, fa, affine, in_bundle = bundle
    made = reconstruct_tractograms(data, bvals, bvecs, mask, fa, affine, ZOOM, seed=1)
    assert [t.desc for t in made] == ["det", "prob"]
    seeds = seed_points(mask & (fa > 0.25), affine, 1)
    for tractogram in made:
        lines = tractogram.streamlines
        assert len(lines) > 0
        assert _direction_along_x(lines) > 0.9
        assert tractogram.meta["StreamlineCount"] == len(lines)
        assert tractogram.meta["SeedCount"] == len(seeds) > 0
        assert tractogram.meta["StoppingCriterion"] == "FA < 0.15"
        assert tractogram.meta["RandomSeed"] == 1
        # streamlines stay in the bundle (FA stopping), in RAS mm of the affine
        ends = np.concatenate([np.asarray(s)[[0, -1]] for s in lines]) / ZOOM
        assert np.all((ends[:, 1] > 2.5) & (ends[:, 1] < 8.5))


def test_tissue_maps_switch_to_the_continuous_map_criterion(bundle):
    data, bvals, bvecs, mask, fa, affine, in_bundle = bundle
    wm = in_bundle.astype(np.float32)
    gm = np.zeros(SHAPE, dtype=np.float32)
    gm[:2] = gm[28:] = 1.0  # grey matter at both ends of the bundle
    csf = 1.0 - wm - gm
    made = reconstruct_tractograms(
        data, bvals, bvecs, mask, fa, affine, ZOOM, [gm, wm, np.clip(csf, 0, 1)], seed=1
    )
    det, prob = made
    assert det.meta["StoppingCriterion"].startswith("continuous map criterion")
    assert det.meta["SeedCount"] == int(wm.sum())  # deterministic seeds: the white matter
    assert prob.meta["SeedingRegion"].startswith("GM/WM interface")
    for tractogram in made:
        assert _direction_along_x(tractogram.streamlines) > 0.9
