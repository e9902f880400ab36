#!/usr/bin/env python3
"""brainlife.io <-> BIDS for the BrainScale app (standard library only).

``bl2bids.py to-bids config.json BIDS_DIR`` lays the app's inputs out as a one-participant
BIDS dataset and prints the participant label; ``bl2bids.py products config.json
OUTPUT_DIR product.json`` describes the derivatives for brainlife.io.

Input datatypes (keys of config.json as registered for the app):

=================  ==========================================  =========================
datatype           config.json keys (files)                    BIDS
=================  ==========================================  =========================
neuro/anat/t1w     ``t1`` (t1.nii.gz)                          anat/_T1w.nii.gz
neuro/func/task    ``bold`` (bold.nii.gz), ``events``          func/_task-<t>[_run-<i>]
                   (events.tsv, optional); lists for several   _bold.nii.gz, _events.tsv
                   runs
neuro/dwi          ``dwi`` (dwi.nii.gz), ``bvals``, ``bvecs``  dwi/_dwi.nii.gz .bval .bvec
=================  ==========================================  =========================

Metadata (``RepetitionTime``, ``TaskName``, ``PhaseEncodingDirection`` ...) comes from
each input's ``meta`` in ``config.json["_inputs"]``: keys that look like BIDS sidecar
fields (CamelCase) go to the JSON sidecar; ``subject`` and ``session`` name the
participant (default ``01``, no session).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

DATATYPES = {"neuro/anat/t1w": "anat", "neuro/func/task": "func", "neuro/dwi": "dwi"}
_SIDECAR_KEY = re.compile(r"^[A-Z][A-Za-z0-9]+$")


def _label(value, default: str) -> str:
    text = re.sub(r"[^A-Za-z0-9]", "", str(value or ""))
    return text or default


def _as_list(value) -> list:
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, list) else [value]


def _meta(config: dict, key: str) -> dict:
    for item in config.get("_inputs", []):
        if key in item.get("keys", []) or item.get("id") == key:
            return dict(item.get("meta") or {})
    return {}


def _place(source: str, target: Path) -> None:
    """Hard-link (same file system) or copy an input into the BIDS folder."""
    if not Path(source).is_file():
        raise SystemExit(f"bl2bids: input file not found: {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _sidecar(path: Path, meta: dict, extra: dict | None = None) -> None:
    fields = {k: v for k, v in meta.items() if _SIDECAR_KEY.match(k)}
    fields.update(extra or {})
    path.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


def config_to_bids(config: dict, bids_dir: Path) -> str:
    """Write a one-participant BIDS dataset from a brainlife.io config.

    Parameters
    ----------
    config : dict
        Parsed ``config.json``.
    bids_dir : pathlib.Path
        Folder to create.

    Returns
    -------
    str
        The participant label.
    """
    metas = [item.get("meta") or {} for item in config.get("_inputs", [])]
    subject = _label(next((m.get("subject") for m in metas if m.get("subject")), None), "01")
    session = next((m.get("session") for m in metas if m.get("session")), None)
    prefix = f"sub-{subject}" + (f"_ses-{_label(session, '1')}" if session else "")
    folder = bids_dir / f"sub-{subject}"
    if session:
        folder /= f"ses-{_label(session, '1')}"
    bids_dir.mkdir(parents=True, exist_ok=True)
    (bids_dir / "dataset_description.json").write_text(json.dumps(
        {"Name": "brainlife.io input", "BIDSVersion": "1.10.0", "DatasetType": "raw",
         "GeneratedBy": [{"Name": "BrainScale brainlife app (bl2bids.py)"}]}, indent=2) + "\n")
    (bids_dir / "participants.tsv").write_text(f"participant_id\nsub-{subject}\n")

    if config.get("t1"):
        name = folder / "anat" / f"{prefix}_T1w.nii.gz"
        _place(config["t1"], name)
        _sidecar(name.with_name(f"{prefix}_T1w.json"), _meta(config, "t1"))

    bolds, events = _as_list(config.get("bold")), _as_list(config.get("events"))
    meta = _meta(config, "bold")
    task = _label(meta.get("TaskName") or meta.get("task"), "task")
    for index, bold in enumerate(bolds, start=1):
        run = f"_run-{index}" if len(bolds) > 1 else ""
        stem = folder / "func" / f"{prefix}_task-{task}{run}"
        _place(bold, stem.with_name(stem.name + "_bold.nii.gz"))
        _sidecar(stem.with_name(stem.name + "_bold.json"), meta, {"TaskName": task})
        if index <= len(events) and events[index - 1]:
            _place(events[index - 1], stem.with_name(stem.name + "_events.tsv"))

    if config.get("dwi"):
        stem = folder / "dwi" / f"{prefix}_dwi"
        _place(config["dwi"], stem.with_name(stem.name + ".nii.gz"))
        _place(config["bvals"], stem.with_name(stem.name + ".bval"))
        _place(config["bvecs"], stem.with_name(stem.name + ".bvec"))
        _sidecar(stem.with_name(stem.name + ".json"), _meta(config, "dwi"))
    return subject


def app_options(config: dict) -> list[str]:
    """Turn the app's form fields in config.json into BrainScale options.

    Parameters
    ----------
    config : dict
        Parsed ``config.json``: optional ``modalities`` and ``atlas`` (space-separated
        strings or lists), ``denoise_strategy``, ``nprocs`` and ``options`` (free text).

    Returns
    -------
    list of str
        Command-line options.
    """
    options: list[str] = []
    for key, flag in (("modalities", "--modalities"), ("atlas", "--atlas")):
        values = config.get(key)
        if values:
            options += [flag, *(values.split() if isinstance(values, str) else values)]
    if config.get("denoise_strategy"):
        options += ["--denoise-strategy", str(config["denoise_strategy"])]
    if config.get("nprocs"):
        options += ["--nprocs", str(int(config["nprocs"]))]
    options += str(config.get("options") or "").split()
    return options


def products(config: dict, output_dir: Path, subject: str) -> dict:
    """Describe the derivatives for brainlife.io's ``product.json``.

    Parameters
    ----------
    config : dict
        Parsed ``config.json``.
    output_dir : pathlib.Path
        The BrainScale derivatives folder.
    subject : str
        Participant label.

    Returns
    -------
    dict
        ``{"meta": ..., "files": [...], "brainlife": [messages]}``.
    """
    files = sorted(p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    relmats = [f for f in files if f.endswith("_relmat.tsv")]
    messages = [{"type": "info", "msg": f"BrainScale wrote {len(files)} files for sub-{subject}"
                 f" ({len(relmats)} connectivity matrices); report: sub-{subject}.html"}]
    if not (output_dir / f"sub-{subject}.html").is_file():
        messages.append({"type": "error", "msg": "no participant report was written"})
    metas = [item.get("meta") or {} for item in config.get("_inputs", [])]
    meta = {"subject": subject}
    meta.update({k: v for m in metas for k, v in m.items() if k in ("session", "run")})
    return {"meta": meta, "files": files, "brainlife": messages}


def main(argv: list[str]) -> int:
    """Command line: ``to-bids CONFIG BIDS_DIR`` or ``products CONFIG OUTPUT_DIR PRODUCT``.

    Parameters
    ----------
    argv : list of str
        Arguments without the program name.

    Returns
    -------
    int
        Exit code.
    """
    if len(argv) >= 3 and argv[0] == "to-bids":
        print(config_to_bids(json.loads(Path(argv[1]).read_text()), Path(argv[2])))
        return 0
    if len(argv) >= 2 and argv[0] == "options":
        print(" ".join(app_options(json.loads(Path(argv[1]).read_text()))))
        return 0
    if len(argv) >= 5 and argv[0] == "products":
        config = json.loads(Path(argv[1]).read_text())
        product = products(config, Path(argv[2]), argv[4])
        Path(argv[3]).write_text(json.dumps(product, indent=2) + "\n")
        return 0
    print(__doc__.splitlines()[0], file=sys.stderr)
    print("usage: bl2bids.py to-bids CONFIG BIDS_DIR | options CONFIG | "
          "products CONFIG OUTPUT_DIR PRODUCT_JSON SUBJECT", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
