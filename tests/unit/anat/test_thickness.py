import nibabel as nib
import numpy as np
import pytest

from workflows.anat.thickness import direct_thickness


def _shell(inner=9.0, outer=12.0, voxel=1.0, size=32):
    grid = (np.indices((size,) * 3) - size / 2 + 0.5) * voxel
    r = np.sqrt((grid**2).sum(0))
    labels = np.zeros(r.shape, np.uint8)
    labels[r < outer + 2] = 1
    labels[r < outer] = 2
    labels[r < inner] = 3
    affine = np.diag([voxel, voxel, voxel, 1.0])

    def img(data):
        out = nib.Nifti1Image(np.asarray(data, np.float32), affine)
        out.header.set_xyzt_units("mm")
        return out

    return img(labels), img(labels == 2), img(labels == 3), r


def test_direct_recovers_the_thickness_of_a_synthetic_shell():
    dseg, gm, wm, r = _shell()
    thick = direct_thickness(dseg, gm, wm, resolution=1.0).get_fdata()
    cortex = np.asarray(dseg.dataobj) == 2
    assert np.all(thick[~cortex] == 0)
    # DiReCT assigns the thickness along the GM; its median over the shell is the truth
    assert np.median(thick[cortex & (thick > 0)]) == pytest.approx(3.0, abs=0.3)
