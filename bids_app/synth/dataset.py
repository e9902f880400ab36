"""The synthetic BIDS dataset as a whole.

The top-level files, each participant's images (through :mod:`~brainscale.bids_app.synth.anat`,
:mod:`~brainscale.bids_app.synth.bold` and :mod:`~brainscale.bids_app.synth.dwi`) and the ground
truth under
``sourcedata/truth/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale import resources
from brainscale.bids_app.synth.anat import write_t1w
from brainscale.bids_app.synth.bold import region_networks, write_bold
from brainscale.bids_app.synth.dwi import B_VALUE, write_dwi
from brainscale.bids_app.synth.geometry import rigid_matrix
from brainscale.bids_app.synth.scanner import site_scanner
from brainscale.bids_app.synth.spec import SubjectContext, SubjectTruth, SynthSpec
from brainscale.derivatives import atomic_write, write_json

_DEFAULT_SPEC = SynthSpec()
"""Default spec of :func:`generate_dataset` (frozen, so one shared instance is safe)."""


def generate_dataset(root: str | Path, spec: SynthSpec = _DEFAULT_SPEC) -> list[SubjectTruth]:
    """Write a synthetic BIDS dataset with its ground truth.

    Parameters
    ----------
    root : path-like
        Dataset folder (created; existing files are overwritten).
    spec : SynthSpec
        What to generate.

    Returns
    -------
    list of SubjectTruth
        The truth of each participant (also written under ``sourcedata/truth``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "dataset_description.json", {
        "Name": "BrainScale synthetic dataset",
        "BIDSVersion": "1.10.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["BrainScale synthetic-data generator"],
        "GeneratedBy": [{"Name": "brainscale synth", "Description": json.dumps(asdict(spec))}],
    })
    with atomic_write(root / "README") as handle:
        handle.write("Synthetic dataset written by `brainscale synth`; ground truth in "
                     "sourcedata/truth/.\n")
    write_json(root / "participants.json", {
        "site": {"Description": "acquisition site (scanner)"},
        "age": {"Description": "age at scan", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "diagnosis": {"Description": "group", "Levels": {"control": "healthy control",
                                                         "patient": "patient"}},
    })
    rng = np.random.default_rng(spec.seed)
    networks = region_networks()
    truths = []
    for number in range(1, spec.subjects + 1):
        site = (number - 1) % spec.sites
        truth = SubjectTruth(
            participant_id=f"sub-{number:02d}",
            site=f"site{site + 1}",
            age=float(np.round(rng.uniform(20, 70), 1)),
            sex="MF"[number % 2],
            diagnosis=("control", "patient")[((number - 1) // spec.sites) % 2],
            scale=float(np.round(rng.uniform(0.92, 1.08), 3)),
            rotation_deg=tuple(float(v) for v in np.round(rng.uniform(-6, 6, 3), 2)),
            translation_mm=tuple(float(v) for v in np.round(rng.uniform(-6, 6, 3), 2)),
            template_to_subject=[],
            volumes_mm3={},
        )
        matrix = rigid_matrix(truth.rotation_deg, truth.translation_mm, truth.scale)
        volume_scale = truth.scale**3
        volumes = {
            label: float(resources.get_template_probseg(label, 1).get_fdata().sum() * volume_scale)
            for label in ("GM", "WM", "CSF")
        }
        volumes["TIV"] = float(resources.get_template_mask(1).get_fdata().sum() * truth.scale**3)
        truth = SubjectTruth(**{**asdict(truth), "template_to_subject": matrix.tolist(),
                                "volumes_mm3": volumes})
        subject_rng = np.random.default_rng([spec.seed, number])
        _write_subject(root, truth, spec, subject_rng, networks)
        truths.append(truth)
    table = pd.DataFrame([{k: getattr(t, k) for k in ("participant_id", "site", "age", "sex",
                                                      "diagnosis")} for t in truths])
    with atomic_write(root / "participants.tsv") as handle:
        table.to_csv(handle, sep="\t", index=False)
    truth_dir = root / "sourcedata" / "truth"
    write_json(truth_dir / "truth.json", {
        "spec": asdict(spec),
        "subjects": [asdict(t) for t in truths],
        "networks": networks.to_dict(orient="list"),
        "b_value": B_VALUE,
    })
    return truths


def _write_subject(root: Path, truth: SubjectTruth, spec: SynthSpec, rng, networks):
    sub = truth.participant_id
    matrix = np.array(truth.template_to_subject)
    scanner = site_scanner(int(truth.site[4:]) - 1)
    common = {"Manufacturer": scanner["Manufacturer"],
              "ManufacturersModelName": scanner["ManufacturersModelName"],
              "MagneticFieldStrength": 3, "InstitutionName": truth.site}
    truth_dir = root / "sourcedata" / "truth" / sub
    subject = SubjectContext(root=root, truth=truth, spec=spec, rng=rng,
                             template_to_subject=matrix, scanner=scanner, sidecar=common,
                             truth_dir=truth_dir)
    if "anat" in spec.modalities:
        write_t1w(subject)
    if "func" in spec.modalities:
        write_bold(subject, networks)
    if "dwi" in spec.modalities:
        write_dwi(subject)
