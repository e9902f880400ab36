"""Embedded templates and atlases: offline, in MNI space, with anatomical names."""

import nibabel as nib
import numpy as np
import pytest

from brainscale.errors import ResourceError
from brainscale.resources import available_atlases, get_atlas, get_non_cortical_mask


def _value_at(img: nib.Nifti1Image, mni_mm: tuple[float, float, float]) -> int:
    ijk = np.rint(np.linalg.inv(img.affine) @ np.append(mni_mm, 1.0))[:3].astype(int)
    return int(np.asarray(img.dataobj)[tuple(ijk)])


def test_desikan_killiany_names_the_regions_at_known_mni_coordinates():
    atlas = get_atlas("DesikanKilliany")
    names = atlas.labels.set_index("index")["name"]
    img = atlas.load()
    assert names[_value_at(img, (-38, -22, 56))] == "ctx-lh-precentral"  # hand knob
    assert names[_value_at(img, (8, -82, 8))] in ("ctx-rh-pericalcarine", "ctx-rh-lingual",
                                                  "ctx-rh-cuneus")
    assert "DesikanKilliany" in available_atlases()


@pytest.mark.parametrize(("mni_mm", "non_cortical"), [
    ((0, -60, -30), True),     # cerebellar vermis
    ((12, -18, 8), True),      # right thalamus
    ((-24, 4, 2), True),       # left putamen
    ((-38, -22, 56), False),   # left precentral gyrus
    ((50, -20, 8), False),     # right superior temporal / Heschl region
])
def test_non_cortical_mask_covers_deep_grey_matter_and_spares_cortex(mni_mm, non_cortical):
    mask = get_non_cortical_mask()
    assert mask is not None
    assert bool(_value_at(mask, mni_mm)) is non_cortical


def test_unknown_atlas_is_a_resource_error_listing_the_available_ones():
    with pytest.raises(ResourceError, match="available: .*DesikanKilliany"):
        get_atlas("Nonexistent")
