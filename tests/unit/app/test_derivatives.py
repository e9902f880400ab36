"""Derivatives writer: entity paths, atomic writes, concurrent dataset_description."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from nipype.pipeline import engine as pe

from brainscale.derivatives import (
    atomic_write,
    build_path,
    parse_entities,
    write_dataset_description,
)
from brainscale.errors import UsageError
from brainscale.workflows.derivatives_sink import DerivativesDataSink


def test_build_path_orders_entities_like_bids():
    path = build_path({"desc": "preproc", "space": "MNI152NLin2009aSym", "sub": "01",
                       "ses": "b", "task": "rest", "run": "2"}, "bold", ".nii.gz", "func")
    assert path == Path("sub-01/ses-b/func/"
                        "sub-01_ses-b_task-rest_run-2_space-MNI152NLin2009aSym_desc-preproc_bold.nii.gz")
    xfm = build_path({"sub": "01", "from": "T1w", "to": "MNI152NLin2009aSym", "mode": "image"},
                     "xfm", ".h5", "anat")
    assert xfm.name == "sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5"
    assert build_path({"sub": "01", "ses": "x"}, "T1w", ".svg", "figures") == Path(
        "sub-01/figures/sub-01_ses-x_T1w.svg")


@pytest.mark.parametrize("entities", [{"sub": "0_1"}, {"sub": "01", "desc": "a-b"},
                                      {"ses": "1"}, {"sub": "01", "colour": "red"}])
def test_build_path_rejects_invalid_entities(entities):
    with pytest.raises(UsageError):
        build_path(entities, "T1w", ".nii.gz", "anat")


def test_parse_entities_round_trips_build_path():
    entities = {"sub": "01", "ses": "2", "task": "rest", "atlas": "DesikanKilliany",
                "meas": "PearsonCorrelation"}
    parsed = parse_entities(build_path(entities, "relmat", ".tsv", "func"))
    assert {k: parsed[k] for k in entities} == entities
    assert parsed["suffix"] == "relmat" and parsed["extension"] == ".tsv"


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def _describe(args):
    output_dir, bids_dir = args
    for _ in range(20):
        write_dataset_description(output_dir, bids_dir)
    return True


def test_dataset_description_is_complete_under_concurrent_writers(tmp_path):
    bids_dir = tmp_path / "raw"
    bids_dir.mkdir()
    (bids_dir / "dataset_description.json").write_text(json.dumps(
        {"Name": "raw", "BIDSVersion": "1.9.0", "DatasetDOI": "doi:10.0/x"}))
    output_dir = tmp_path / "derivatives"
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        assert all(pool.map(_describe, [(output_dir, bids_dir)] * 8))
    description = json.loads((output_dir / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "BrainScale"
    assert description["SourceDatasets"] == [
        {"URL": bids_dir.resolve().as_uri(), "DOI": "doi:10.0/x", "Name": "raw"}]
    assert not list(output_dir.glob(".*.tmp"))


def test_datasink_node_writes_entities_sidecar_and_sources(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub-01" / "func").mkdir(parents=True)
    (raw / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    source = raw / "sub-01" / "func" / "sub-01_task-rest_run-1_bold.nii.gz"
    source.write_bytes(b"")
    result = tmp_path / "confounds.tsv"
    result.write_text("trans_x\n0.1\n")
    node = pe.Node(DerivativesDataSink(base_directory=str(tmp_path / "out"), datatype="func",
                                       suffix="timeseries", extension=".tsv", desc="confounds",
                                       meta_dict={"trans_x": {"Units": "mm"}}),
                   name="ds_confounds", base_dir=str(tmp_path / "work"))
    node.inputs.in_file = str(result)
    node.inputs.source_file = str(source)
    out = Path(node.run().outputs.out_file)
    assert out == tmp_path / "out/sub-01/func/sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
    assert out.read_text() == "trans_x\n0.1\n"
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-01/func/sub-01_task-rest_run-1_bold.nii.gz"]
    assert sidecar["trans_x"] == {"Units": "mm"}


def test_datasink_with_several_sources_keeps_shared_entities_and_lists_all(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub-02" / "dwi").mkdir(parents=True)
    (raw / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    sources = [raw / "sub-02" / "dwi" / f"sub-02_dir-{d}_run-1_dwi.nii.gz" for d in ("AP", "PA")]
    for source in sources:
        source.write_bytes(b"")
    result = tmp_path / "fa.nii.gz"
    result.write_bytes(b"fa")
    sink = DerivativesDataSink(base_directory=str(tmp_path / "out"), datatype="dwi",
                               suffix="dwimap", model="tensor", param="fa",
                               in_file=str(result), source_file=[str(s) for s in sources])
    out = Path(sink.run(cwd=str(tmp_path)).outputs.out_file)
    # dir- differs between the series and is dropped; run- is shared and kept
    assert out == tmp_path / "out/sub-02/dwi/sub-02_run-1_model-tensor_param-fa_dwimap.nii.gz"
    sidecar = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Sources"] == [f"bids:raw:sub-02/dwi/{s.name}" for s in sources]
    # a one-element list is the same as the single file
    single = DerivativesDataSink(base_directory=str(tmp_path / "one"), datatype="dwi",
                                 suffix="dwimap", model="tensor", param="fa",
                                 in_file=str(result), source_file=[str(sources[0])])
    out_one = Path(single.run(cwd=str(tmp_path)).outputs.out_file)
    assert out_one.name == "sub-02_dir-AP_run-1_model-tensor_param-fa_dwimap.nii.gz"


def test_compressing_copy_gives_the_same_bytes_every_time(tmp_path):
    """The gzip header must not carry the random temporary name (nor a time stamp)."""
    import gzip

    import nibabel as nib
    import numpy as np

    from brainscale.derivatives import copy_atomic

    raw = tmp_path / "image.nii"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4)), raw)
    first = copy_atomic(raw, tmp_path / "a" / "out.nii.gz").read_bytes()
    second = copy_atomic(raw, tmp_path / "b" / "out.nii.gz").read_bytes()
    assert first == second
    assert gzip.decompress(first) == raw.read_bytes()
