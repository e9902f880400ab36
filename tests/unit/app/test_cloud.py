"""S3 staging (brainscale.bids_app.cloud) against moto's in-process S3: what is downloaded, run and uploaded."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

from brainscale.bids_app import cloud  # noqa: E402
from brainscale.bids_app.run import main  # noqa: E402
from brainscale.errors import NoInputError, UsageError  # noqa: E402

BUCKET = "brainscale-test"
SUBJECTS = ("01", "02", "03")


def write_tiny_bids(root: Path, subjects=SUBJECTS) -> Path:
    """Write a minimal valid BIDS dataset with one small T1w per participant."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0", "DatasetDOI": "doi:10.0/tiny"})
    )
    (root / "participants.tsv").write_text(
        "participant_id\tage\n" + "".join(f"sub-{s}\t{20 + i}\n" for i, s in enumerate(subjects))
    )
    rng = np.random.default_rng(0)
    for subject in subjects:
        anat = root / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True)
        image = nib.Nifti1Image(rng.random((6, 6, 6)).astype("float32"), np.eye(4))
        nib.save(image, anat / f"sub-{subject}_T1w.nii.gz")
        (anat / f"sub-{subject}_T1w.json").write_text(json.dumps({"MagneticFieldStrength": 3}))
    return root


@pytest.fixture
def s3(monkeypatch):
    """A mocked S3 with an empty bucket; yields the client."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
                 "SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def upload_folder(client, folder: Path, prefix: str) -> dict[str, bytes]:
    """Put every file of a folder under a prefix; return key -> content."""
    content = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        content[key] = path.read_bytes()
    return content


def bucket_keys(client, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


class RecordingClient:
    """Wrap an S3 client and record the keys downloaded and uploaded."""

    def __init__(self, client):
        self.client = client
        self.downloaded: list[str] = []
        self.uploaded: list[str] = []

    def __getattr__(self, name):
        return getattr(self.client, name)

    def download_file(self, bucket, key, filename):
        self.downloaded.append(key)
        return self.client.download_file(bucket, key, filename)

    def upload_file(self, filename, bucket, key):
        self.uploaded.append(key)
        return self.client.upload_file(filename, bucket, key)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://b/x/y/", ("b", "x/y")), ("s3://b", ("b", "")), ("s3://b/", ("b", ""))],
)
def test_split_s3_url(url, expected):
    assert cloud.split_s3_url(url) == expected


@pytest.mark.parametrize("url", ["s3:///prefix", "/local/path", "S3://b/x"])
def test_split_s3_url_rejects_malformed(url):
    with pytest.raises(UsageError, match="S3 URL"):
        cloud.split_s3_url(url)


def test_list_and_download_keep_only_selected_participants(s3, tmp_path):
    source = write_tiny_bids(tmp_path / "src")
    for unused in ("sourcedata/sub-01/scan.dcm", "derivatives/other/sub-01/x.nii.gz"):
        (source / unused).parent.mkdir(parents=True)
        (source / unused).write_bytes(b"large and unused")
    sent = upload_folder(s3, source, "studies/ds1")
    assert cloud.list_participants(s3, f"s3://{BUCKET}/studies/ds1") == list(SUBJECTS)

    local = tmp_path / "local"
    cloud.download_prefix(s3, f"s3://{BUCKET}/studies/ds1/", local, cloud._keep_subjects(["02"]))
    got = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    expected = {k.removeprefix("studies/ds1/") for k in sent
                if not k.startswith(("studies/ds1/sub-", "studies/ds1/sourcedata/",
                                     "studies/ds1/derivatives/"))
                or k.startswith("studies/ds1/sub-02/")}
    assert "participants.tsv" in expected and "sub-02/anat/sub-02_T1w.nii.gz" in expected
    assert got == expected
    for relative in got:  # byte-identical copies
        assert (local / relative).read_bytes() == sent[f"studies/ds1/{relative}"]


def test_upload_changes_skips_unchanged_and_private_files(s3, tmp_path):
    out = tmp_path / "out"
    (out / "sub-01").mkdir(parents=True)
    (out / "old.txt").write_text("staged in")
    before = cloud.snapshot(out)
    (out / "sub-01" / "new.tsv").write_text("a\tb\n")
    (out / ".brainscale.lock").write_text("")
    (out / ".x.json.abc.tmp").write_text("")
    uploaded = cloud.upload_changes(s3, out, f"s3://{BUCKET}/derivs", before)
    assert uploaded == ["sub-01/new.tsv"]
    assert bucket_keys(s3, "derivs/") == {"derivs/sub-01/new.tsv"}


@pytest.mark.parametrize(
    ("env", "args", "subject"),
    [
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1"}, [], "02"),
        ({"SLURM_ARRAY_TASK_ID": "2"}, [], "03"),
        ({}, ["--array-index", "0"], "01"),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "2"}, ["--array-index", "1"], "02"),  # option wins
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1"}, ["--participant-label", "01", "03"], "03"),
    ],
)
def test_participant_run_from_and_to_s3(s3, tmp_path, monkeypatch, env, args, subject):
    """An array task reads one participant from S3 and writes its outputs back to S3."""
    upload_folder(s3, write_tiny_bids(tmp_path / "src"), "bids")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRAINSCALE_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    recorder = RecordingClient(s3)
    monkeypatch.setattr(cloud, "make_client", lambda: recorder)

    code = main([f"s3://{BUCKET}/bids", f"s3://{BUCKET}/out", "participant",
                 "--reports-only", "--skip-bids-validation", *args])

    assert code == 0
    downloaded_subjects = {k.split("/")[1] for k in recorder.downloaded if k.startswith("bids/sub-")}
    assert downloaded_subjects == {f"sub-{subject}"}
    keys = bucket_keys(s3, "out/")
    assert {k for k in keys if k.endswith(".html")} == {f"out/sub-{subject}.html"}
    assert "out/.brainscale.lock" not in keys
    description = json.loads(
        s3.get_object(Bucket=BUCKET, Key="out/dataset_description.json")["Body"].read()
    )
    assert description["DatasetType"] == "derivative"
    assert [s["URL"] for s in description["SourceDatasets"]] == [f"s3://{BUCKET}/bids"]
    assert description["SourceDatasets"][0]["DOI"] == "doi:10.0/tiny"
    assert any(k.startswith("out/logs/config-") and k.endswith(".toml") for k in keys)
    assert not list((tmp_path / "scratch").iterdir())  # scratch removed after success


def test_failed_run_uploads_nothing_and_keeps_scratch(s3, tmp_path):
    upload_folder(s3, write_tiny_bids(tmp_path / "src"), "bids")
    seen = {}

    def failing_run(argv):
        out = Path(argv[1])
        out.mkdir(parents=True)
        (out / "partial.txt").write_text("half")
        seen["argv"] = argv
        return 1

    code = cloud.run_staged([f"s3://{BUCKET}/bids", f"s3://{BUCKET}/out", "participant"],
                            failing_run, client=s3, scratch=tmp_path / "scratch", environ={})
    assert code == 1
    assert bucket_keys(s3, "out/") == set()
    assert Path(seen["argv"][1], "partial.txt").is_file()  # kept for inspection
    # without an array index every participant is staged in
    assert sorted(p.name for p in Path(seen["argv"][0]).glob("sub-*")) == [f"sub-{s}" for s in SUBJECTS]


def test_group_level_stages_derivatives_in_and_uploads_only_new_files(s3, tmp_path):
    upload_folder(s3, write_tiny_bids(tmp_path / "src"), "bids")
    client = RecordingClient(s3)
    client.put_object(Bucket=BUCKET, Key="out/sub-01/anat/sub-01_desc-brain_morph.tsv",
                      Body=b"tiv_mm3\n1500000\n")
    seen = {}

    def group_run(argv):
        bids_dir, out = Path(argv[0]), Path(argv[1])
        seen["morph"] = (out / "sub-01/anat/sub-01_desc-brain_morph.tsv").read_text()
        seen["subjects_staged"] = sorted(p.name for p in bids_dir.glob("sub-*"))
        seen["participants"] = (bids_dir / "participants.tsv").is_file()
        (out / "group").mkdir()
        (out / "group" / "group.html").write_text("<html></html>")
        return 0

    code = cloud.run_staged([f"s3://{BUCKET}/bids", f"s3://{BUCKET}/out", "group"], group_run,
                            client=client, scratch=tmp_path / "scratch", environ={})
    assert code == 0
    assert seen == {"morph": "tiv_mm3\n1500000\n", "subjects_staged": [], "participants": True}
    assert client.uploaded == ["out/group/group.html"]


def test_missing_input_is_a_no_input_error(s3, tmp_path):
    with pytest.raises(NoInputError, match=f"s3://{BUCKET}/nothing"):
        cloud.run_staged([f"s3://{BUCKET}/nothing", str(tmp_path / "out"), "participant"],
                         lambda argv: 0, client=s3, scratch=tmp_path, environ={})


def test_missing_bucket_exits_with_no_input_code(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSCALE_SCRATCH", str(tmp_path))
    code = main(["s3://no-such-bucket/bids", str(tmp_path / "out"), "participant"])
    assert code == 66


JOB_DEFINITION = Path(__file__).resolve().parents[3] / "scripts" / "aws" / "job-definition.json"


def test_batch_job_definition_matches_the_aws_api_and_the_cli():
    """The example job definition is a valid RegisterJobDefinition request and a valid run."""
    import botocore.session
    from botocore.validate import ParamValidator

    from brainscale.bids_app.cli import parse_args

    definition = json.loads(JOB_DEFINITION.read_text())
    model = botocore.session.get_session().get_service_model("batch")
    report = ParamValidator().validate(definition,
                                       model.operation_model("RegisterJobDefinition").input_shape)
    assert not report.has_errors(), report.generate_report()

    command = definition["containerProperties"]["command"]
    refs = {word.removeprefix("Ref::") for word in command if word.startswith("Ref::")}
    assert refs == set(definition["parameters"])
    for level in ("participant", "group"):
        values = {**definition["parameters"], "level": level}
        argv = [values[w.removeprefix("Ref::")] if w.startswith("Ref::") else w for w in command]
        config = parse_args(argv, environ={"AWS_BATCH_JOB_ARRAY_INDEX": "4"})
        assert config.execution.analysis_level == level
        assert config.execution.array_index == 4
    environment = {e["name"]: e["value"] for e in definition["containerProperties"]["environment"]}
    scratch = environment["BRAINSCALE_SCRATCH"]
    mounts = {m["containerPath"] for m in definition["containerProperties"]["mountPoints"]}
    assert scratch in mounts  # the staging area is a writable volume on a read-only root
    assert definition["containerProperties"]["readonlyRootFilesystem"] is True
