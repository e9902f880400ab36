import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.workflows.dwi.connectome import build_connectome, streamline_lengths
from brainscale.workflows.dwi.odf import fit_orientation_model, max_sh_order
from brainscale.workflows.dwi.tensor import fit_tensor
from brainscale.workflows.dwi.tracking import (
    fa_stopping_criterion,
    gm_wm_interface,
    load_trx,
    save_trx,
    seed_points,
    seeding_regions,
    track,
)

from .conftest import FIBRE_EVALS, gradient_scheme, tensor_signal

SHAPE = (40, 40, 5)
ZOOM = 2.0
NAMES = ["left", "right", "posterior", "anterior", "unreached"]


@pytest.fixture(scope="module")
def crossing():
    """Two straight bundles (along x and along y) crossing at the centre, with end labels."""
    bvals, bvecs = gradient_scheme(45, 2000.0, n_b0=3)
    iso = tensor_signal(bvals, bvecs, [("x", 1.0, np.full(3, 0.8e-3))])
    along_x = tensor_signal(bvals, bvecs, [("x", 1.0, FIBRE_EVALS)])
    along_y = tensor_signal(bvals, bvecs, [("y", 1.0, FIBRE_EVALS)])
    both = tensor_signal(bvals, bvecs, [("x", 0.5, FIBRE_EVALS), ("y", 0.5, FIBRE_EVALS)])
    x, y, _ = np.indices(SHAPE)
    in_x = (y >= 16) & (y < 24) & (x >= 2) & (x < 38)
    in_y = (x >= 16) & (x < 24) & (y >= 2) & (y < 38)
    data = np.empty((*SHAPE, len(bvals)), dtype=np.float32)
    data[:] = iso
    data[in_x] = along_x
    data[in_y] = along_y
    data[in_x & in_y] = both
    data *= 500.0
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[in_x & (x < 6)] = 1
    labels[in_x & (x >= 34)] = 2
    labels[in_y & (y < 6)] = 3
    labels[in_y & (y >= 34)] = 4
    labels[:3, :3] = 5
    affine = np.diag([ZOOM, ZOOM, ZOOM, 1.0])
    return data, bvals, bvecs, affine, labels, in_x | in_y


def test_sh_order_follows_direction_count():
    assert max_sh_order(5) == 0
    assert max_sh_order(6) == 2
    assert max_sh_order(15) == 4
    assert max_sh_order(20) == 4
    assert max_sh_order(45) == 8


@pytest.mark.parametrize("tracker", ["deterministic", "probabilistic"])
def test_tracking_follows_crossing_bundles_and_connectome(crossing, tracker, tmp_path):
    data, bvals, bvecs, affine, labels, wm = crossing
    mask = np.ones(SHAPE, dtype=bool)
    maps = fit_tensor(data, bvals, bvecs, mask)
    model = fit_orientation_model(data, bvals, bvecs, mask, maps["fa"])
    assert model.method == "csd" and model.sh_order == 8
    seeds = seed_points(wm, affine, density=1)
    streamlines = track(
        model.shm_coeff,
        fa_stopping_criterion(maps["fa"], 0.1),
        seeds,
        affine,
        tracker=tracker,
        step_size=0.5,
        min_length=10.0,
        seed=7,
    )
    assert len(streamlines) > 0.5 * len(seeds)

    regions = pd.DataFrame({"index": [1, 2, 3, 4, 5], "name": NAMES})
    mats = build_connectome(streamlines, labels, affine, regions, maps["fa"], ZOOM**3)
    count = mats["count"].set_index("node")
    assert list(count.index) == NAMES and list(count.columns) == NAMES
    values = count.to_numpy()
    np.testing.assert_array_equal(values, values.T)
    assert (values >= 0).all() and np.all(np.diag(values) == 0)
    main = count.loc["left", "right"] + count.loc["posterior", "anterior"]
    crossed = values[:4, :4].sum() / 2 - main
    assert count.loc["left", "right"] > 10 and count.loc["posterior", "anterior"] > 10
    assert crossed < 0.1 * main
    assert values[4].sum() == 0

    # the bundles are 72 mm long end to end; end points lie in the 8 mm end labels
    length = mats["meanlength"].set_index("node")
    assert 54.0 <= length.loc["left", "right"] <= 76.0
    # mean FA along the bundle lies between the FA of the crossing and of a single fibre
    fa_single = np.median(maps["fa"][wm & (labels == 1)])
    fa_cross = maps["fa"][18:22, 18:22, 2].mean()
    mean_fa = mats["meanfa"].set_index("node").loc["left", "right"]
    assert fa_cross < mean_fa < fa_single
    # normalized count = count / mean volume of the two regions
    volumes = {name: np.sum(labels == i + 1) * ZOOM**3 for i, name in enumerate(NAMES)}
    expected = count.loc["left", "right"] / ((volumes["left"] + volumes["right"]) / 2)
    assert mats["countnorm"].set_index("node").loc["left", "right"] == pytest.approx(expected)

    # TRX round trip keeps the world coordinates
    ref = nib.Nifti1Image(maps["fa"], affine)
    loaded = load_trx(save_trx(streamlines, ref, tmp_path / "tracks.trx"))
    assert len(loaded) == len(streamlines)
    np.testing.assert_allclose(loaded[0], streamlines[0], atol=1e-3)
    np.testing.assert_allclose(
        streamline_lengths(loaded), streamline_lengths(streamlines), rtol=1e-4
    )


def test_gm_wm_interface_is_the_white_matter_layer_touching_grey_matter():
    # grey matter for x < 4, white matter for x >= 4 (partial volume 0.6 WM at x = 4)
    x = np.indices((10, 8, 6))[0]
    gm = np.where(x < 4, 1.0, 0.0)
    wm = np.where(x >= 4, 1.0, 0.0)
    wm[x == 4], gm[x == 4] = 0.6, 0.4
    interface = gm_wm_interface(wm, gm)
    np.testing.assert_array_equal(interface, x == 4)
    mask = np.ones(x.shape, bool)
    mask[:, :, 0] = False
    regions = seeding_regions(mask, wm=wm, gm=gm)
    np.testing.assert_array_equal(regions["deterministic"][0], mask & (x >= 4))
    np.testing.assert_array_equal(regions["probabilistic"][0], mask & (x == 4))
    assert "interface" in regions["probabilistic"][1]
    # no grey matter next to the white matter: probabilistic seeds fall back to the WM
    regions = seeding_regions(mask, wm=wm, gm=np.zeros_like(gm))
    np.testing.assert_array_equal(regions["probabilistic"][0], regions["deterministic"][0])
    # without tissue maps both trackers seed where FA is high
    fa = np.where(x > 6, 0.5, 0.1)
    regions = seeding_regions(mask, fa=fa)
    for seed_mask, _ in regions.values():
        np.testing.assert_array_equal(seed_mask, mask & (x > 6))


def test_parallel_odf_fit_and_tracking_equal_the_serial_ones(crossing):
    data, bvals, bvecs, affine, _, wm = crossing
    mask = np.ones(SHAPE, dtype=bool)
    fa = fit_tensor(data, bvals, bvecs, mask)["fa"]
    serial = fit_orientation_model(data, bvals, bvecs, mask, fa)
    parallel = fit_orientation_model(data, bvals, bvecs, mask, fa, n_jobs=2)
    np.testing.assert_array_equal(parallel.shm_coeff, serial.shm_coeff)
    seeds = seed_points(wm, affine, density=1)[::4]
    for tracker in ("deterministic", "probabilistic"):
        runs = [track(serial.shm_coeff, fa_stopping_criterion(fa, 0.1), seeds, affine,
                      tracker=tracker, seed=3, n_jobs=n_jobs) for n_jobs in (1, 2)]
        assert len(runs[0]) == len(runs[1]) > 0
        for one, two in zip(*runs, strict=True):
            np.testing.assert_array_equal(one, two)
