"""What to generate (:class:`SynthSpec`) and one participant's truth (:class:`SubjectTruth`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    Attributes
    ----------
    subjects : int
        Number of participants.
    sites : int
        Number of acquisition sites (participants are assigned round-robin).
    seed : int
        Seed of every random draw; the same spec gives the same dataset.
    modalities : tuple of str
        Which of ``anat``, ``func``, ``dwi`` to write.
    t1w_voxel_mm, bold_voxel_mm, dwi_voxel_mm : float
        Isotropic voxel sizes.
    bold_volumes : int
        BOLD time points (two of them non-steady-state).
    repetition_time : float
        BOLD TR in seconds.
    directions : int
        DWI gradient directions at b=1000.
    coupling : float
        Share of a region's BOLD variance that comes from its network (controls).
    patient_coupling : float
        The same for network 0 in patients (the known biological effect).
    """

    subjects: int = 4
    sites: int = 2
    seed: int = 0
    modalities: tuple[str, ...] = ("anat", "func", "dwi")
    t1w_voxel_mm: float = 2.0
    bold_voxel_mm: float = 4.0
    dwi_voxel_mm: float = 3.0
    bold_volumes: int = 100
    repetition_time: float = 2.0
    directions: int = 30
    coupling: float = 0.6
    patient_coupling: float = 0.3


@dataclass(frozen=True)
class SubjectTruth:
    """Ground truth of one synthetic participant."""

    participant_id: str
    site: str
    age: float
    sex: str
    diagnosis: str
    scale: float
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    template_to_subject: list[list[float]]
    volumes_mm3: dict[str, float]


@dataclass(frozen=True)
class SubjectContext:
    """What the image writers of one participant share.

    Attributes
    ----------
    root : pathlib.Path
        Dataset folder.
    truth : SubjectTruth
        The participant.
    spec : SynthSpec
        What to generate.
    rng : numpy.random.Generator
        The participant's random source, drawn from by the T1w, then the BOLD, then the
        DWI writer (the order is part of the dataset's reproducibility).
    template_to_subject : numpy.ndarray
        4x4 world matrix from template to subject space.
    scanner : dict
        :func:`~brainscale.bids_app.synth.scanner.site_scanner` of the participant's site.
    sidecar : dict
        JSON sidecar fields shared by the participant's images.
    truth_dir : pathlib.Path
        Where the participant's ground truth goes.
    """

    root: Path
    truth: SubjectTruth
    spec: SynthSpec
    rng: np.random.Generator
    template_to_subject: np.ndarray
    scanner: dict
    sidecar: dict
    truth_dir: Path
