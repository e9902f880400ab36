"""Other pipelines' derivatives, in each documented layout written here, read into group tables.

Layouts (file names and columns as the pipelines document them):
- XCP-D >= 0.7: ``sub-<l>_task-<t>_space-<s>_seg-<A>_stat-pearsoncorrelation_relmat.tsv``, first
  column ``Node``; ``..._seg-<A>_stat-mean_timeseries.tsv``, one column per region.
- giga_connectome: ``sub-<l>_ses-<s>_task-<t>_run-<r>_space-<s>_res-2_seg-<A>_meas-PearsonCorrelation
  _desc-<strategy>_relmat.tsv``, header of region names and no index column.
- ABIDE Preprocessed (C-PAC): ``<SITE>_<SUBID>_rois_<atlas>.1D``, a ``#`` header of ROI labels,
  whitespace-separated values, one row per volume.
- FreeSurfer 7: ``<subject>/stats/aseg.stats`` (``# Measure`` lines, ``# ColHeaders Index SegId
  NVoxels Volume_mm3 StructName ...``), ``?h.aparc.stats`` (``# ColHeaders StructName NumVert
  SurfArea GrayVol ThickAvg ThickStd MeanCurv ...``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainscale.bids_app.run import main
from brainscale.errors import InputDataError, UsageError
from brainscale.workflows.group.external import parse_derivatives_option, read_external_derivatives

REGIONS = ["7Networks_LH_Vis_1", "7Networks_LH_Vis_2", "7Networks_RH_SomMot_1", "7Networks_RH_DMN_1"]


def _series(rng, n_volumes=120, coupling=0.0):
    values = rng.normal(size=(n_volumes, len(REGIONS)))
    values[:, 1] += coupling * values[:, 0]
    return values


def test_xcpd_relmat_with_node_column_and_timeseries_without_relmat(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for sub in ("01", "02"):
        func = tmp_path / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        matrix = np.corrcoef(_series(rng).T)
        table = pd.DataFrame(matrix, index=pd.Index(REGIONS, name="Node"), columns=REGIONS)
        stem = f"sub-{sub}_task-rest_space-MNI152NLin2009cAsym_seg-4S156Parcels"
        table.to_csv(func / f"{stem}_stat-pearsoncorrelation_relmat.tsv", sep="\t")
        series = _series(rng)
        pd.DataFrame(series, columns=REGIONS).to_csv(
            func / f"{stem}_stat-mean_timeseries.tsv", sep="\t", index=False
        )  # same atlas: the relmat wins
        other = _series(rng)
        pd.DataFrame(other, columns=REGIONS).to_csv(
            func / f"sub-{sub}_task-rest_seg-Glasser_stat-mean_timeseries.tsv", sep="\t", index=False
        )
        written[sub] = matrix, np.corrcoef(other.T)
    data, _ = read_external_derivatives("xcpd", tmp_path)
    assert sorted(data.connectomes) == [
        "xcpd_func_task-rest_atlas-4S156Parcels_meas-pearsoncorrelation",
        "xcpd_func_task-rest_atlas-Glasser_meas-PearsonCorrelation",
    ]
    relmat = data.connectomes["xcpd_func_task-rest_atlas-4S156Parcels_meas-pearsoncorrelation"]
    computed = data.connectomes["xcpd_func_task-rest_atlas-Glasser_meas-PearsonCorrelation"]
    assert relmat.regions == REGIONS
    for row, sub in enumerate(("01", "02")):
        np.testing.assert_allclose(relmat.matrix(row), written[sub][0], atol=1e-6)
        np.testing.assert_allclose(computed.matrix(row), written[sub][1], atol=1e-6)
    assert data.subjects["func"].all() and not data.subjects["anat"].any()


def test_giga_connectome_relmat_without_index_column_runs_averaged(tmp_path):
    rng = np.random.default_rng(1)
    func = tmp_path / "sub-1" / "ses-timepoint1" / "func"
    func.mkdir(parents=True)
    matrices = []
    for run in ("01", "02"):
        matrix = np.corrcoef(_series(rng).T)
        matrices.append(matrix)
        name = (
            f"sub-1_ses-timepoint1_task-rest_run-{run}_space-MNI152NLin2009cAsym_res-2_"
            "seg-Schaefer2018100Parcels7Networks_meas-PearsonCorrelation_desc-denoiseSimple_relmat.tsv"
        )
        pd.DataFrame(matrix, columns=REGIONS).to_csv(func / name, sep="\t", index=False)
    data, _ = read_external_derivatives("giga", tmp_path)
    (name, conn), = data.connectomes.items()
    assert name == (
        "giga_func_task-rest_atlas-Schaefer2018100Parcels7Networks_meas-PearsonCorrelation_"
        "desc-denoiseSimple"
    )
    assert conn.subjects[["participant_id", "session_id", "n_runs"]].values.tolist() == [
        ["sub-1", "ses-timepoint1", 2]
    ]
    np.testing.assert_allclose(conn.matrix(0), np.mean(matrices, axis=0), atol=1e-6)


def write_abide_1d(path, values, labels=True):
    header = "\t".join(f"#{2001 + j}" for j in range(values.shape[1])) + "\n" if labels else ""
    body = "\n".join("\t".join(f"{v:.6f}" for v in row) for row in values)
    path.write_text(header + body + "\n")


def test_abide_1d_files_matched_to_participants_and_constant_rois_noted(tmp_path):
    rng = np.random.default_rng(2)
    values = _series(rng)
    write_abide_1d(tmp_path / "Caltech_0051456_rois_cc200.1D", values)
    empty = _series(rng)
    empty[:, 3] = 0.0  # an empty ROI, as in some ABIDE CC200 files
    write_abide_1d(tmp_path / "Caltech_0051457_rois_cc200.1D", empty)
    data, notes = read_external_derivatives("abide", tmp_path, ["sub-51456", "sub-51457"])
    conn = data.connectomes["abide_func_atlas-cc200_meas-PearsonCorrelation"]
    assert conn.subjects["participant_id"].tolist() == ["sub-51456", "sub-51457"]
    assert conn.regions == ["2001", "2002", "2003", "2004"]
    np.testing.assert_allclose(conn.matrix(0), np.corrcoef(values.T), atol=1e-5)
    expected = np.corrcoef(empty[:, :3].T)
    np.testing.assert_allclose(conn.matrix(1)[:3, :3], expected, atol=1e-5)
    np.testing.assert_array_equal(conn.matrix(1)[3, :3], 0.0)
    assert any("1 constant region(s) correlate 0" in note for note in notes)


ASEG = """# Title Segmentation Statistics
# Measure BrainSeg, BrainSegVol, Brain Segmentation Volume, {brain:.6f}, mm^3
# Measure TotalGray, TotalGrayVol, Total gray matter volume, {gray:.6f}, mm^3
# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, {etiv:.6f}, mm^3
# NRows 2
# NTableCols 10
# ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean normStdDev normMin normMax normRange
  1   4     5000     {vent:.1f}  Left-Lateral-Ventricle  35.0  10.0  10.0  80.0  70.0
  2  17     4200     {hippo:.1f}  Left-Hippocampus  75.0  8.0  40.0  100.0  60.0
"""
APARC = """# Table of FreeSurfer cortical parcellation anatomical statistics
# Measure Cortex, MeanThickness, Mean Thickness, 2.5, mm
# ColHeaders StructName NumVert SurfArea GrayVol ThickAvg ThickStd MeanCurv GausCurv FoldInd CurvInd
bankssts 1500 {area:.0f} 2600 {thick:.3f} 0.5 0.11 0.02 14 1.8
cuneus 2000 1400 3300 1.900 0.4 0.14 0.03 19 2.0
"""


def test_freesurfer_subject_folders_give_volumes_cortical_measures_and_etiv(tmp_path):
    truth = {}
    for subject, scale in (("sub-01", 1.0), ("sub-02", 1.1), ("fsaverage", 1.0)):
        stats = tmp_path / subject / "stats"
        stats.mkdir(parents=True)
        values = {"brain": 1.1e6 * scale, "gray": 6.5e5 * scale, "etiv": 1.55e6 * scale,
                  "vent": 7000 * scale, "hippo": 4100 * scale}
        (stats / "aseg.stats").write_text(ASEG.format(**values))
        for hemi, thick in (("lh", 2.6), ("rh", 2.7)):
            (stats / f"{hemi}.aparc.stats").write_text(
                APARC.format(area=900 * scale, thick=thick * scale)
            )
        truth[subject] = values
    data, _ = read_external_derivatives("fs", tmp_path)
    aseg = data.tables["fs_anat_atlas-aseg_morph"].set_index("participant_id")
    brain = data.tables["fs_anat_desc-brain_morph"].set_index("participant_id")
    aparc = data.tables["fs_anat_atlas-aparc_morph"].set_index("participant_id")
    assert list(aseg.index) == ["sub-01", "sub-02"]  # fsaverage is not a participant
    assert aseg.loc["sub-02", "volume_mm3__Left-Hippocampus"] == pytest.approx(4100 * 1.1)
    assert brain.loc["sub-02", "etiv_mm3"] == pytest.approx(truth["sub-02"]["etiv"])
    assert brain.loc["sub-01", "gm_volume_mm3"] == pytest.approx(6.5e5)
    assert aparc.loc["sub-02", "thickness_mean_mm__R_bankssts"] == pytest.approx(2.97)
    assert aparc.loc["sub-01", "surface_area_mm2__L_cuneus"] == 1400
    assert aparc.loc["sub-01", "gm_volume_mm3__L_bankssts"] == 2600


def test_bad_folders_and_options_are_one_line_errors(tmp_path):
    with pytest.raises(InputDataError, match="folder not found"):
        read_external_derivatives("x", tmp_path / "absent")
    with pytest.raises(InputDataError, match="no relmat/timeseries TSV"):
        read_external_derivatives("x", tmp_path)
    (tmp_path / "Site_0000001_rois_cc200.1D").write_text("1 2 3\n4 5\n")
    with pytest.raises(InputDataError, match="rows of different lengths"):
        read_external_derivatives("x", tmp_path)
    assert parse_derivatives_option(["abide=/data/abide"]) == {"abide": tmp_path.parent.parent
                                                              .joinpath("/data/abide")}
    for bad in (["abide"], ["a-b=/x"], ["x=/a", "x=/b"]):
        with pytest.raises(ValueError, match="--derivatives"):
            parse_derivatives_option(bad)


def test_group_run_from_a_folder_of_1d_time_series_and_a_phenotype_table(tmp_path):
    """End to end through the BIDS-App: coupling of ROIs 1-2 in patients is found across sites."""
    rng = np.random.default_rng(4)
    bids, out, timeseries = tmp_path / "bids", tmp_path / "out", tmp_path / "abide"
    for folder in (bids, out, timeseries):
        folder.mkdir()
    rows = []
    for index in range(36):
        site, patient = f"SITE{index % 3}", index % 2
        sub_id = f"{50000 + index:07d}"
        values = _series(rng, n_volumes=150, coupling=1.2 * patient)
        values *= 1 + 0.5 * (index % 3)  # site scaling: correlations are unaffected
        write_abide_1d(timeseries / f"{site}_{sub_id}_rois_cc200.1D", values)
        rows.append({"participant_id": f"sub-{50000 + index}", "SITE_ID": site,
                     "DX_GROUP": "ASD" if patient else "TDC", "AGE_AT_SCAN": 10 + index % 7})
    pd.DataFrame(rows).to_csv(bids / "participants.tsv", sep="\t", index=False)
    (bids / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    args = [str(bids), str(out), "group", "--derivatives", f"abide={timeseries}",
            "--models", "logreg", "--n-permutations", "9", "--n-random-graphs", "0",
            "--nprocs", "1"]
    assert main(args) == 0
    group = out / "group"
    summary = pd.read_csv(group / "prediction" / "summary.tsv", sep="\t")
    row = summary.query("metric == 'balanced_accuracy'").iloc[0]
    assert row["feature_set"] == "abide_func_atlas-cc200_meas-PearsonCorrelation_edges"
    assert row["cv"] == "leave-one-site-out" and row["value"] > 0.8
    assert row["permutation_p"] == pytest.approx(0.1)  # the smallest p of 9 permutations
    edges = pd.read_csv(
        group / "prediction" / "abide_func_atlas-cc200_meas-PearsonCorrelation_edges_model-logreg_"
        "features.tsv", sep="\t"
    )
    assert edges["feature"].iloc[0] == "2001__2002"
    page = (group / "group.html").read_text()
    assert "SITE_ID" in page and "DX_GROUP" in page  # the defaults found ABIDE's columns
    assert main([*args[:5], "--models", "svm"]) == UsageError.exit_code
