"""Image models (SFCN, ViT) against synthetic cohorts whose truth is known.

The planted cohort lowers a ball of voxels in patients: a model must classify it above
chance (the 95 % upper bound of a chance balanced accuracy on the test rows is about
0.63) and its saliency must be larger in the ball than elsewhere (a model that ignored
the ball would give a ratio near 1). Pure-noise maps with labels unbalanced across
sites must give chance accuracy in leave-site-out CV with ComBat fitted inside the
folds. Synthetic ageing (0.5 % loss per year) must be recovered better than by the
mean age.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error

from brainscale.workflows.group.image_evaluation import evaluate_image_model, run_image_models
from brainscale.workflows.group.image_models import (
    SFCNClassifier,
    SFCNRegressor,
    ViTClassifier,
    load_image_model,
    save_image_model,
    use_mixed_precision,
)
from brainscale.workflows.group.saliency import attention_rollout, gradient_x_input, occlusion_map
from brainscale.workflows.group.voxel_inputs import simulate_voxel_cohort

SHAPE = (12, 14, 12)
SMALL_SFCN = {"channels": (4, 8, 16), "learning_rate": 3e-3, "device": "cpu"}
N_TRAIN = 100


@pytest.fixture(scope="module")
def planted():
    data, participants, region = simulate_voxel_cohort(
        160, SHAPE, effect=2.0, region_radius=2.5, site_shift=0.0, seed=0)
    return data, participants["diagnosis"].to_numpy(), region[data.mask]


@pytest.fixture(scope="module")
def planted_sfcn(planted):
    data, y, _ = planted
    return SFCNClassifier(mask=data.mask, epochs=30, **SMALL_SFCN).fit(
        data.values[:N_TRAIN], y[:N_TRAIN])


def _region_ratio(values: np.ndarray, region: np.ndarray) -> float:
    values = np.abs(values)
    return float(values[region].mean() / values[~region].mean())


def test_sfcn_classifies_the_planted_region_and_its_saliency_peaks_there(planted, planted_sfcn):
    data, y, region = planted
    test = slice(N_TRAIN, None)
    accuracy = balanced_accuracy_score(y[test], planted_sfcn.predict(data.values[test]))
    assert accuracy >= 0.75
    contrast, magnitude = gradient_x_input(planted_sfcn, data.values[test], y[test])
    assert _region_ratio(contrast, region) > 2.0
    assert _region_ratio(magnitude, region) > 1.2
    occlusion = occlusion_map(planted_sfcn, data.values[test], size=2)
    # occluding the region removes evidence for "patient" in patients, for "control" in controls
    assert _region_ratio(occlusion, region) > 1.5


def test_vit_classifies_the_planted_region_and_attends_to_it(planted):
    data, y, region = planted
    vit = ViTClassifier(mask=data.mask, patch_size=3, epochs=30, learning_rate=3e-3,
                        device="cpu").fit(data.values[:N_TRAIN], y[:N_TRAIN])
    test = slice(N_TRAIN, None)
    assert balanced_accuracy_score(y[test], vit.predict(data.values[test])) >= 0.75
    rollout = attention_rollout(vit, data.values[test])
    assert _region_ratio(rollout, region) > 1.2
    contrast, _ = gradient_x_input(vit, data.values[test], y[test])
    assert _region_ratio(contrast, region) > 2.0


@pytest.mark.parametrize(("effect", "balance", "low", "high"), [
    # pure noise, the label following the site (80 % / 50 % / 20 % patients), shifted sites:
    # chance 0.5 +- 1.96 * sqrt(0.25 / 90), widened for the balanced accuracy
    (0.0, (0.8, 0.5, 0.2), 0.35, 0.65),
    # the same pipeline finds a planted effect (95 % chance upper bound for 90 maps: 0.60)
    (2.0, None, 0.70, 1.0),
])
def test_leave_site_out_with_in_fold_combat_scores_noise_at_chance(effect, balance, low, high):
    data, participants, _ = simulate_voxel_cohort(
        90, (10, 12, 10), effect=effect, region_radius=2.5, site_shift=1.0,
        label_balance=balance, seed=3)
    evaluation = evaluate_image_model(
        data, participants["diagnosis"], covars=participants, model="sfcn", site_col="site",
        harmonize="combat", n_bootstrap=50, device="cpu",
        params={"epochs": 20, "channels": (4, 8), "learning_rate": 3e-3})
    assert evaluation.cv == "leave-one-site-out"
    score = evaluation.metrics.set_index("metric").loc["balanced_accuracy", "value"]
    assert low <= score <= high
    assert set(evaluation.maps) == {"saliency", "absaliency"}
    assert evaluation.maps["saliency"].shape == data.mask.shape


def test_brain_age_regression_beats_the_mean_age():
    data, participants, _ = simulate_voxel_cohort(
        300, SHAPE, atrophy_rate=0.005, site_shift=0.0, noise_sd=0.2, seed=1)
    age = participants["age"].to_numpy()
    model = SFCNRegressor(mask=data.mask, epochs=25, patience=15, **SMALL_SFCN)
    model.fit(data.values[:200], age[:200])
    mae = mean_absolute_error(age[200:], model.predict(data.values[200:]))
    mean_age_mae = mean_absolute_error(age[200:], np.full(100, age[:200].mean()))
    # uniform 20-80 years: the mean age is off by 15 years on average
    assert mae < 0.5 * mean_age_mae
    assert mae < 7.5


def test_training_is_seeded_and_a_saved_model_predicts_the_same(planted, planted_sfcn, tmp_path):
    data, y, _ = planted
    again = clone(planted_sfcn).fit(data.values[:N_TRAIN], y[:N_TRAIN])
    test = data.values[N_TRAIN:]
    np.testing.assert_array_equal(planted_sfcn.predict_proba(test), again.predict_proba(test))
    other = clone(planted_sfcn).set_params(seed=1, epochs=3).fit(data.values[:N_TRAIN],
                                                                  y[:N_TRAIN])
    assert not np.allclose(other.predict_proba(test), again.predict_proba(test))
    save_image_model(planted_sfcn, tmp_path / "sfcn.pt")
    loaded = load_image_model(tmp_path / "sfcn.pt")
    np.testing.assert_allclose(loaded.predict_proba(test), planted_sfcn.predict_proba(test),
                               rtol=1e-6)
    assert list(loaded.classes_) == ["control", "patient"]


def test_early_stopping_keeps_the_best_validation_epoch():
    data, participants, _ = simulate_voxel_cohort(60, (8, 10, 8), effect=0.0, seed=5)
    y = participants["diagnosis"].to_numpy()  # noise: validation loss cannot keep falling
    model = SFCNClassifier(mask=data.mask, channels=(4, 8), epochs=60, patience=4,
                           learning_rate=1e-2, device="cpu").fit(data.values, y)
    assert model.n_epochs_ < 60
    assert model.best_epoch_ == int(np.argmin(model.validation_curve_))
    assert model.n_epochs_ - 1 - model.best_epoch_ == 4


def test_memory_mapped_pointers_train_like_in_memory_rows(tmp_path):
    data, participants, _ = simulate_voxel_cohort(40, (8, 10, 8), effect=1.5, seed=2)
    np.save(tmp_path / "v.npy", data.values)
    data.values = np.load(tmp_path / "v.npy", mmap_mode="r")
    y = participants["diagnosis"].to_numpy()
    params = {"channels": (4, 8), "epochs": 3, "device": "cpu"}
    pointers = data.row_pointers()
    lazy = SFCNClassifier(source=data, **params).fit(pointers, y)
    eager = SFCNClassifier(mask=data.mask, **params).fit(np.asarray(data.values), y)
    np.testing.assert_allclose(lazy.predict_proba(pointers.iloc[::-1]),
                               eager.predict_proba(np.asarray(data.values)[::-1]), rtol=1e-5)
    assert clone(lazy).source is data  # cloning does not copy the memory map
    with pytest.raises(ValueError, match="voxels"):
        SFCNClassifier(mask=data.mask, **params).fit(np.zeros((40, 7)), y)


def test_mixed_precision_only_on_cuda():
    assert use_mixed_precision(torch.device("cpu"), "auto") is False
    assert use_mixed_precision(torch.device("cuda"), "auto") is True
    assert use_mixed_precision(torch.device("cuda"), False) is False
    with pytest.raises(ValueError, match="CUDA"):
        use_mixed_precision(torch.device("cpu"), True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_results_within_tolerance(planted):
    data, y, _ = planted
    params = {"channels": (4, 8, 16), "epochs": 5, "mixed_precision": False}
    cpu = SFCNClassifier(mask=data.mask, device="cpu", **params).fit(data.values, y)
    cuda = SFCNClassifier(mask=data.mask, device="cuda", **params).fit(data.values, y)
    np.testing.assert_allclose(cuda.predict_proba(data.values), cpu.predict_proba(data.values),
                               atol=1e-3)


def _write_maps(root, data, participants):
    import nibabel as nib

    for label, row in zip(data.labels, data.values, strict=True):
        folder = root / label / "anat"
        folder.mkdir(parents=True)
        nib.save(data.to_image(row), folder / (
            f"{label}_space-MNI152NLin2009aSym_res-2_label-GM_desc-modulated_probseg.nii.gz"))


def test_group_hook_writes_metrics_stat_maps_and_models(tmp_path):
    import nibabel as nib

    data, participants, _ = simulate_voxel_cohort(30, (8, 10, 8), effect=2.0, seed=4)
    _write_maps(tmp_path, data, participants)
    notes: list[str] = []
    summaries = run_image_models(
        tmp_path, participants, "diagnosis", voxel_inputs=["gm"], models=["sfcn", "vit"],
        site_col="site", harmonize="intensity", notes=notes, device="cpu", mask="data",
        params={"sfcn": {"epochs": 2, "channels": (4, 8)}, "vit": {"epochs": 2, "patch_size": 2}})
    assert [s.model for s in summaries] == ["sfcn", "vit"]
    out = tmp_path / "group" / "image_models"
    saliency = nib.load(out / "gm_model-vit_space-MNI152NLin2009aSym_stat-rollout_statmap.nii.gz")
    np.testing.assert_allclose(saliency.affine, data.affine)
    assert (out / "gm_model-sfcn_space-MNI152NLin2009aSym_stat-saliency_statmap.json").is_file()
    metrics = pd.read_csv(out / "gm_model-sfcn_metrics.tsv", sep="\t")
    assert "balanced_accuracy" in set(metrics["metric"])
    assert (tmp_path / "group" / "models" / "gm_model-vit.pt").is_file()
    assert (tmp_path / "group" / "figures" / "image_gm_model-sfcn_maps.svg").is_file()
    assert (tmp_path / "group" / "voxels" / "gm.npy").is_file()


@pytest.mark.slow
def test_run_group_trains_image_models_when_asked(derivatives_cohort):
    import nibabel as nib

    from brainscale.workflows.group.run import run_group

    cohort = derivatives_cohort(n_sites=3, n_per_site=20)
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    affine[:3, 3] = (-96.0, -132.0, -78.0)  # covers the MNI152 brain at 8 mm
    rng = np.random.default_rng(0)
    region = np.zeros((25, 30, 24), dtype=bool)
    region[6:10, 14:18, 10:14] = True
    for _, row in cohort.participants.dropna(subset=["site"]).iterrows():
        folder = cohort.root / row["participant_id"] / "anat"
        if not folder.is_dir():
            continue
        volume = 0.5 + 0.1 * rng.normal(size=region.shape)
        volume[region] -= 0.3 * (row["diagnosis"] == "patient")
        nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), folder / (
            f"{row['participant_id']}_space-MNI152NLin2009aSym_res-2_label-GM_desc-modulated_"
            "probseg.nii.gz"))
    report = run_group(cohort.root, cohort.root / "participants.tsv", target="diagnosis",
                       covariates=["age"], seed=0, n_permutations=0, device="cpu",
                       models=["logreg"], n_random_graphs=0, voxel_inputs=["gm"],
                       image_models=["sfcn"])
    html = report.read_text()
    assert "voxels:gm" in html and "image_gm_model-sfcn_maps.svg" in html
    metrics = pd.read_csv(cohort.root / "group" / "image_models" / "gm_model-sfcn_metrics.tsv",
                          sep="\t").set_index("metric")
    # a 3-SD planted effect: above the 95 % chance bound for 60 maps (0.63)
    assert metrics.loc["balanced_accuracy", "value"] > 0.7
    saliency = nib.load(cohort.root / "group" / "image_models" /
                        "gm_model-sfcn_space-MNI152NLin2009aSym_stat-saliency_statmap.nii.gz")
    peak = np.unravel_index(np.abs(saliency.get_fdata()).argmax(), region.shape)
    assert region[peak]  # the saliency peaks in the planted region, on the MNI grid


@pytest.mark.slow
def test_brain_age_on_800_maps_nears_the_linear_optimum():
    # ageing is linear in the maps here, so cross-validated ridge is close to optimal
    from sklearn.linear_model import RidgeCV

    data, participants, _ = simulate_voxel_cohort(
        1000, SHAPE, atrophy_rate=0.005, site_shift=0.0, noise_sd=0.2, seed=1)
    age, X = participants["age"].to_numpy(), data.values
    model = SFCNRegressor(mask=data.mask, epochs=40, **SMALL_SFCN).fit(X[:800], age[:800])
    mae = mean_absolute_error(age[800:], model.predict(X[800:]))
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(X[:800], age[:800])
    ridge_mae = mean_absolute_error(age[800:], ridge.predict(X[800:]))
    assert mae < 1.25 * ridge_mae  # measured: 5.4 years (ridge 5.1, the mean age 14.2)
