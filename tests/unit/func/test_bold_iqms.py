"""BOLD IQMs and artifact detection on synthetic runs with planted spikes, ghosts and noise."""

import numpy as np
import pytest

from brainscale.workflows.func import iqms

SHAPE = (32, 32, 20)
BASELINE, SIGMA, N_VOLUMES = 1000.0, 10.0, 100


def _run(sigma=SIGMA, seed=0, global_weight=0.0, spikes=(), spike_size=8.0, ghost=0.0):
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    centre = np.array(SHAPE)[:, None, None, None] / 2 - 0.5
    mask = (((grid - centre) / np.array([10, 10, 7])[:, None, None, None]) ** 2).sum(0) < 1
    series = sigma * rng.standard_normal((*SHAPE, N_VOLUMES))
    if global_weight:
        series += sigma * global_weight * rng.standard_normal(N_VOLUMES)
    anatomy = BASELINE * (1 + 0.2 * np.sin(grid[0] / 3) * np.cos(grid[1] / 4))  # structure
    series[mask] += anatomy[mask][:, None]
    slab = mask & (grid[2] < SHAPE[2] / 2)
    for volume in spikes:  # a spike hits half of the slices of one volume
        series[slab, volume] += spike_size * sigma
    if ghost:
        mean = series.mean(axis=-1)
        series += ghost * np.roll(mean * mask, SHAPE[1] // 2, axis=1)[..., None]
    return series.astype(np.float32), mask


def _iqms(series, mask, fd=None, dummy=0):
    return iqms.compute_bold_iqms(series, mask, series.mean(axis=-1), mask, (3.0, 3.0, 3.0),
                                  fd, dummy)


def test_stationary_noise_has_its_textbook_values():
    series, mask = _run()
    out = _iqms(series, mask, fd=np.full(N_VOLUMES, 0.1))
    assert out["tsnr"] == pytest.approx(BASELINE / SIGMA, rel=0.06)
    assert out["dvars_std"] == pytest.approx(1.0, abs=0.05)
    assert out["dvars_vstd"] == pytest.approx(1.0, abs=0.05)
    assert out["dvars_nstd"] == pytest.approx(np.sqrt(2) * SIGMA, rel=0.05)
    assert out["gcor"] < 0.01 and out["aor"] < 0.005
    assert out["outlier_volumes"] == [] and out["fd_num"] == 0
    assert abs(out["gsr_x"]) < 0.01 and abs(out["gsr_y"]) < 0.01


def test_planted_spikes_are_found_with_few_false_positives():
    rng = np.random.default_rng(3)
    found = missed = false = clean = 0
    for seed in range(4):
        planted = sorted(rng.choice(np.arange(1, N_VOLUMES), 5, replace=False).tolist())
        series, mask = _run(seed=seed, spikes=planted)
        flagged = set(_iqms(series, mask)["outlier_volumes"])
        found += len(flagged & set(planted))
        missed += len(set(planted) - flagged)
        false += len(flagged - set(planted))
        clean += N_VOLUMES - len(planted)
    sensitivity, false_positive_rate = found / (found + missed), false / clean
    assert sensitivity >= 0.95 and false_positive_rate <= 0.01
    spiky, mask = _run(spikes=[10, 40, 70])
    calm, _ = _run()
    assert _iqms(spiky, mask)["dvars_std"] > _iqms(calm, mask)["dvars_std"] + 0.1
    assert _iqms(spiky, mask)["aqi"] > _iqms(calm, mask)["aqi"]


def test_dummy_volumes_are_left_out_of_the_temporal_metrics():
    series, mask = _run()
    series[..., :3] *= 1.5  # non-steady-state T1 saturation
    out = _iqms(series, mask, dummy=3)
    assert out["dummy_trs"] == 3 and out["outlier_volumes"] == []
    assert out["tsnr"] == pytest.approx(BASELINE / SIGMA, rel=0.06)


def test_global_correlation_matches_the_shared_signal():
    weight = 0.5  # pairwise correlation weight^2 / (1 + weight^2) = 0.2
    series, mask = _run(global_weight=weight)
    assert iqms.gcor(series, mask) == pytest.approx(weight**2 / (1 + weight**2), abs=0.03)


def test_ghost_to_signal_along_the_phase_axis():
    series, mask = _run(ghost=0.05)
    out = _iqms(series, mask)
    # the ghost fills most of the (dilated) ghost mask: the ratio is a little under 5 %
    assert 0.6 * 0.05 < out["gsr_y"] <= 0.05
    assert abs(out["gsr_x"]) < 0.01
    double = _iqms(*_run(ghost=0.10))
    assert double["gsr_y"] == pytest.approx(2 * out["gsr_y"], rel=0.05)


def test_tsnr_falls_as_noise_rises_and_fd_summary():
    values = [_iqms(*_run(sigma=s))["tsnr"] for s in (5.0, 10.0, 20.0)]
    assert values[0] > values[1] > values[2]
    summary = iqms.fd_summary(np.array([np.nan, 0.1, 0.3, 0.5, 0.1]))
    assert summary == {"fd_mean": pytest.approx(0.25), "fd_num": 2, "fd_perc": 50.0}
