"""Cortical thickness against constructed truths: shells and a buried sulcus."""

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.anat.laplace_thickness import laplace_thickness, sulcal_ridge
from brainscale.workflows.anat.thickness import cortical_thickness, direct_thickness


def _image(data, voxel):
    out = nib.Nifti1Image(np.asarray(data, np.float32), np.diag(list(voxel) + [1.0]))
    out.header.set_xyzt_units("mm")
    return out


def _shell(inner=9.0, outer=12.0, voxel=(1.0, 1.0, 1.0), size=32, partial_volume=False):
    """A WM ball inside a GM shell of thickness ``outer - inner`` inside CSF.

    With ``partial_volume`` the GM map holds the fraction of each voxel inside the shell
    (a linear ramp over one voxel at each boundary), as a scanner would image it.
    """
    voxel = np.asarray(voxel, dtype=float)
    grid = (np.indices((size,) * 3) - size / 2 + 0.5) * voxel[:, None, None, None]
    r = np.sqrt((grid**2).sum(0))
    labels = np.zeros(r.shape, np.uint8)
    labels[r < outer + 3] = 1
    labels[r < outer] = 2
    labels[r < inner] = 3
    if partial_volume:
        gm = np.clip(np.minimum(outer - r, r - inner) / voxel.mean() + 0.5, 0, 1)
    else:
        gm = labels == 2
    return _image(labels, voxel), _image(gm, voxel), _image(labels == 3, voxel)


def _buried_sulcus(voxel=1.0, bank=3.0):
    """Two WM blades whose GM banks touch with no CSF between them (a buried sulcus).

    The blades rise from a WM floor; above them a GM layer of ``bank`` mm is capped by
    CSF. In the sulcus each bank is ``bank`` mm thick.
    """
    shape = [int(round(s / voxel)) for s in (60, 16, 60)]
    x, _, z = (np.indices(shape) + 0.5) * voxel
    labels = np.ones(shape, np.uint8)
    labels[z < 40] = 2
    blades = (z < 40 - bank) & ((x < 30 - bank) | (x > 30 + bank))
    labels[blades | (z < 15)] = 3
    return _image(labels, (voxel,) * 3), _image(labels == 2, (voxel,) * 3), labels, x, z


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (0.7, 0.667, 0.667)])
@pytest.mark.parametrize("partial_volume", [False, True])
def test_laplace_recovers_the_thickness_of_a_shell(voxel, partial_volume):
    size = int(round(32 / min(voxel)))
    dseg, gm, _ = _shell(voxel=voxel, size=size, partial_volume=partial_volume)
    thick = laplace_thickness(dseg, gm).get_fdata()
    cortex = np.asarray(dseg.dataobj) == 2
    assert np.all(thick[~cortex] == 0)
    assert np.all(thick[cortex] > 0)
    # binary labels place the boundaries on the voxel grid; fractions put them in between
    assert np.median(thick[cortex]) == pytest.approx(3.0, abs=0.3 if not partial_volume else 0.15)
    spread = np.percentile(thick[cortex], 95) - np.percentile(thick[cortex], 5)
    assert spread < (0.8 if not partial_volume else 0.3)


def test_laplace_thickness_scales_with_the_shell():
    thin, thick = (np.median(laplace_thickness(d, g, ).get_fdata()[np.asarray(d.dataobj) == 2])
                   for d, g, _ in (_shell(9, 11, partial_volume=True),
                                   _shell(9, 13, partial_volume=True)))
    assert thick - thin == pytest.approx(2.0, abs=0.15)


def test_buried_sulcus_is_rebuilt_so_each_bank_keeps_its_thickness():
    dseg, gm, labels, x, z = _buried_sulcus()
    banks = (labels == 2) & (z > 20) & (z < 30)
    ridge = sulcal_ridge(labels.astype(np.int16), np.ones(3))
    # the ridge is the one-voxel midline of the sulcus, nowhere else
    assert ridge.any() and np.all(np.abs(x[ridge] - 30) <= 1)
    thick = laplace_thickness(dseg, gm).get_fdata()
    assert np.median(thick[banks]) == pytest.approx(3.0, abs=0.3)
    # without the ridge, streamlines run up the sulcus and the banks look far thicker
    naive = laplace_thickness(dseg, gm, rebuild_sulci=False, max_thickness=100).get_fdata()
    assert np.median(naive[banks]) > 6.0


def test_grey_matter_enclosed_by_white_matter_gets_no_thickness():
    dseg, gm, _ = _shell(partial_volume=True)
    labels = np.asarray(dseg.dataobj).copy()
    labels[14:18, 14:18, 14:18] = 2  # a GM nucleus in the WM core
    gm = gm.get_fdata()
    gm[14:18, 14:18, 14:18] = 1.0
    thick = laplace_thickness(_image(labels, (1, 1, 1)), _image(gm, (1, 1, 1))).get_fdata()
    assert np.all(thick[14:18, 14:18, 14:18] == 0)
    assert np.median(thick[np.asarray(dseg.dataobj) == 2]) == pytest.approx(3.0, abs=0.15)


def test_a_convex_shell_has_no_sulcal_ridge():
    dseg, _, _ = _shell()
    assert not sulcal_ridge(np.asarray(dseg.dataobj).astype(np.int16), np.ones(3)).any()


def test_non_cortical_grey_matter_gets_no_thickness_and_lengths_are_clipped():
    dseg, gm, _ = _shell(9, 17, partial_volume=True)
    labels = np.asarray(dseg.dataobj)
    half = np.zeros(labels.shape, bool)
    half[:16] = True  # pretend one half is cerebellum
    thick = laplace_thickness(dseg, gm, non_cortical=half, max_thickness=6.0).get_fdata()
    assert np.all(thick[half] == 0)
    assert thick.max() == pytest.approx(6.0)  # the 8 mm shell is clipped


def test_direct_recovers_the_thickness_of_a_synthetic_shell():
    dseg, gm, wm = _shell()
    thick = direct_thickness(dseg, gm, wm, resolution=1.0).get_fdata()
    cortex = np.asarray(dseg.dataobj) == 2
    assert np.all(thick[~cortex] == 0)
    # DiReCT assigns the thickness along the GM; its median over the shell is the truth
    assert np.median(thick[cortex & (thick > 0)]) == pytest.approx(3.0, abs=0.3)


def test_unknown_method_is_refused():
    dseg, gm, wm = _shell()
    with pytest.raises(ValueError, match="not a volumetric thickness method"):
        cortical_thickness(dseg, [gm, wm], method="freesurfer")
