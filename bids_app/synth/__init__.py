"""Synthetic BIDS datasets with known ground truth: the demo and the test-data factory.

Each participant's head is the embedded MNI152 2009a template moved by a known rigid
transform and scaled by a known factor, imaged by a site-specific "scanner" (intensity
scale, bias field, noise). From it come:

- a T1w image (true tissue volumes = template volumes x scale^3);
- a resting BOLD run whose regional signals follow a known network structure (four
  networks of Desikan-Killiany regions; patients have weaker coupling in network 0), with
  known head motion, two non-steady-state volumes and interleaved ``SliceTiming``;
- a DWI series from a known tensor field (FA, MD and principal directions), with two
  b=0 volumes and ``directions`` gradient directions at b=1000 s/mm^2.

Images are written in LAS orientation with FSL-convention b-vectors, as dcm2niix writes
them. The ground truth is stored under ``sourcedata/truth/`` (ignored by BIDS tools).

Modules: :mod:`~brainscale.bids_app.synth.spec` (what to generate, the truth of a participant),
:mod:`~brainscale.bids_app.synth.geometry` (transforms, grids, resampling),
:mod:`~brainscale.bids_app.synth.scanner` (site scanners, bias field, NIfTI writing),
:mod:`~brainscale.bids_app.synth.anat`, :mod:`~brainscale.bids_app.synth.bold`,
:mod:`~brainscale.bids_app.synth.dwi`
(one modality each) and :mod:`~brainscale.bids_app.synth.dataset` (the whole dataset).
"""

from brainscale.bids_app.synth.bold import (
    MOTION_LIMIT,
    MOTION_STEP_SD,
    N_NETWORKS,
    head_motion,
    motion_matrix,
    region_networks,
)
from brainscale.bids_app.synth.dataset import generate_dataset
from brainscale.bids_app.synth.dwi import B_VALUE, gradient_directions, tensor_eigenvalues
from brainscale.bids_app.synth.geometry import las_grid, rigid_matrix, sample
from brainscale.bids_app.synth.spec import SubjectTruth, SynthSpec

__all__ = [
    "B_VALUE",
    "MOTION_LIMIT",
    "MOTION_STEP_SD",
    "N_NETWORKS",
    "SubjectTruth",
    "SynthSpec",
    "generate_dataset",
    "gradient_directions",
    "head_motion",
    "las_grid",
    "motion_matrix",
    "region_networks",
    "rigid_matrix",
    "sample",
    "tensor_eigenvalues",
]
