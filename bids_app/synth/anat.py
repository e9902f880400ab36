"""Synthetic T1w image of one participant.

The template head moved and scaled into the participant's space, then imaged by the
site's scanner (bias field, noise, gain).
"""

from __future__ import annotations

import numpy as np

from brainscale import resources
from brainscale.bids_app.synth.geometry import head_box, las_grid, sample
from brainscale.bids_app.synth.scanner import bias_field, save_nifti
from brainscale.bids_app.synth.spec import SubjectContext
from brainscale.derivatives import write_json


def write_t1w(subject: SubjectContext) -> None:
    """Write one participant's T1w image and sidecar.

    Parameters
    ----------
    subject : SubjectContext
        The participant (``spec.t1w_voxel_mm``; the noise is drawn from ``rng``).
    """
    root, truth, spec, rng = subject.root, subject.truth, subject.spec, subject.rng
    matrix, scanner, common = subject.template_to_subject, subject.scanner, subject.sidecar
    sub = truth.participant_id
    world_to_template = np.linalg.inv(matrix)
    center, extent = head_box(matrix)
    shape, affine = las_grid(center, extent, spec.t1w_voxel_mm)
    t1 = sample(resources.get_template(1), shape, affine, world_to_template)
    t1 *= bias_field(shape, affine, scanner["bias"])
    t1 += rng.normal(0, scanner["noise"], shape).astype(np.float32)
    t1 = np.clip(t1, 0, None) * scanner["gain"]
    save_nifti(t1.astype(np.float32), affine, root / sub / "anat" / f"{sub}_T1w.nii.gz")
    write_json(root / sub / "anat" / f"{sub}_T1w.json",
               {**common, "RepetitionTime": 2.3, "EchoTime": 0.00298, "FlipAngle": 9,
                "InversionTime": 0.9, "MRAcquisitionType": "3D"})
