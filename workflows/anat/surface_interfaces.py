"""Thin Nipype interfaces of the cortical surfaces: load, call a numeric function, save.

:class:`CorticalSurfaces` extracts the white and pial meshes of each hemisphere and the
thickness measured between them (:mod:`brainscale.workflows.anat.surface_thickness`);
:class:`SurfaceMorphometry` adds the areas measured on the meshes to a morphometry table.
Meshes are GIFTI files in the T1w's world coordinates (mm, RAS+), as FreeSurfer's and
fMRIPrep's ``_hemi-L_white.surf.gii`` are.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from brainscale.workflows.interface_utils import out_path

HEMISPHERE_STRUCTURES = {"L": "CortexLeft", "R": "CortexRight"}
SURFACE_KINDS = {"white": "GrayWhite", "pial": "Pial"}
SURFACE_METHOD = (
    "0.5 level sets of tissue fractions against local (8 mm Gaussian) CSF/GM/WM mean "
    "intensities, per cerebral hemisphere (split by the nearest white matter, cerebellum "
    "and brainstem cut off), sulcal midlines rebuilt from the WM-distance ridge; marching "
    "cubes (Lewiner et al. 2003, scikit-image) and 10 Taubin lambda/mu iterations "
    "(Taubin 1995)")
THICKNESS_METHOD = (
    "FreeSurfer's definition (Fischl & Dale 2000): mean of the white-to-pial and "
    "pial-to-white closest-point distances at each white vertex, clipped at 5 mm; each "
    "cortical GM voxel takes the thickness of its nearest cortical white vertex")
AREA_METHOD = ("white-surface area per region: a third of each triangle's area to each of "
               "its vertices, summed over the vertices by the atlas label of the nearest "
               "cortical voxel (within 2 mm), as FreeSurfer's SurfArea")


def save_surface(vertices: np.ndarray, faces: np.ndarray, path: str, hemi: str,
                 kind: str) -> str:
    """Write a mesh as a GIFTI surface (pointset in world mm + triangles)."""
    meta = {"AnatomicalStructurePrimary": HEMISPHERE_STRUCTURES[hemi],
            "AnatomicalStructureSecondary": SURFACE_KINDS[kind],
            "GeometricType": "Anatomical"}
    coords = nib.gifti.GiftiDataArray(
        np.asarray(vertices, dtype=np.float32), intent="NIFTI_INTENT_POINTSET",
        datatype="NIFTI_TYPE_FLOAT32", meta=meta,
        coordsys=nib.gifti.GiftiCoordSystem(dataspace=3, xformspace=3))
    triangles = nib.gifti.GiftiDataArray(np.asarray(faces, dtype=np.int32),
                                         intent="NIFTI_INTENT_TRIANGLE",
                                         datatype="NIFTI_TYPE_INT32")
    image = nib.gifti.GiftiImage(
        darrays=[coords, triangles],
        meta=nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": HEMISPHERE_STRUCTURES[hemi]}))
    nib.save(image, path)
    return path


def load_surface(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a GIFTI surface: vertices ``(n, 3)`` float64 and faces ``(m, 3)`` int32."""
    image = nib.load(path)
    vertices = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")[0].data
    faces = image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")[0].data
    return np.asarray(vertices, dtype=np.float64).reshape(-1, 3), \
        np.asarray(faces, dtype=np.int32).reshape(-1, 3)


def save_shape(values: np.ndarray, path: str, hemi: str) -> str:
    """Write one value per vertex as a GIFTI shape file."""
    array = nib.gifti.GiftiDataArray(np.asarray(values, dtype=np.float32),
                                     intent="NIFTI_INTENT_SHAPE",
                                     datatype="NIFTI_TYPE_FLOAT32")
    image = nib.gifti.GiftiImage(
        darrays=[array],
        meta=nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": HEMISPHERE_STRUCTURES[hemi]}))
    nib.save(image, path)
    return path


def load_shape(path: str) -> np.ndarray:
    """Read the values of a GIFTI shape file."""
    return np.asarray(nib.load(path).darrays[0].data, dtype=np.float64).ravel()


class _SurfacesInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    dseg = File(exists=True, mandatory=True, desc="discrete segmentation")
    tpms = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF")
    inverse_xfm = File(exists=True, mandatory=True, desc="MNI -> T1w displacement field")


class _SurfacesOutputSpec(TraitedSpec):
    white = OutputMultiObject(File(exists=True), desc="white surfaces (GIFTI), L then R")
    pial = OutputMultiObject(File(exists=True), desc="pial surfaces (GIFTI), L then R")
    thickness = OutputMultiObject(File(exists=True),
                                  desc="thickness per white vertex (GIFTI shape), L then R")
    out_file = File(exists=True, desc="thickness map (mm) of the cortical GM voxels")
    meta = traits.Dict(desc="thickness sidecar")
    surface_meta = traits.Dict(desc="surface sidecar")


class CorticalSurfaces(SimpleInterface):
    """White and pial meshes per hemisphere and the thickness between them.

    See :func:`brainscale.workflows.anat.surface_thickness.reconstruct_cortex`.
    """

    input_spec = _SurfacesInputSpec
    output_spec = _SurfacesOutputSpec

    def _run_interface(self, runtime):
        from brainscale.resources import get_atlas, get_non_cortical_mask
        from brainscale.workflows.anat.images import like
        from brainscale.workflows.anat.normalization import apply_displacement
        from brainscale.workflows.anat.surface_thickness import (
            MAX_THICKNESS_MM,
            reconstruct_cortex,
            template_cerebrum_maps,
        )
        from brainscale.workflows.anat.thickness import COARSE_VOXEL_MM

        dseg = nib.load(self.inputs.dseg)
        gm, wm, csf = (nib.load(f).get_fdata(dtype=np.float32) for f in self.inputs.tpms)
        dk, aal = get_atlas("DesikanKilliany"), get_atlas("AAL")
        side, excluded = template_cerebrum_maps(dk.load(), dk.labels, aal.load(), aal.labels)
        xfm = self.inputs.inverse_xfm
        side = apply_displacement(side, dseg, xfm).get_fdata(dtype=np.float32)
        # one nearest-neighbour warp for both masks (bit 1: cut off, bit 2: not cortex)
        non_cortical = get_non_cortical_mask()
        masks = np.asarray(excluded.dataobj).astype(np.uint8)
        if non_cortical is not None:
            masks |= (np.asarray(non_cortical.dataobj) > 0).astype(np.uint8) << 1
        masks = np.rint(apply_displacement(nib.Nifti1Image(masks, excluded.affine), dseg, xfm,
                                           interpolation="nearestNeighbor").get_fdata())
        masks = masks.astype(np.uint8)
        result = reconstruct_cortex(
            nib.load(self.inputs.t1w).get_fdata(dtype=np.float32), np.stack([csf, gm, wm]),
            np.asarray(dseg.dataobj), dseg.affine, side, (masks & 1) > 0,
            (masks & 2) > 0 if non_cortical is not None else None)
        paths = {"white": [], "pial": [], "thickness": []}
        notes = []
        for hemi in ("L", "R"):
            surfaces = result.hemispheres.get(hemi)
            if surfaces is None:
                notes.append(f"hemisphere {hemi}: no white matter to build a surface from")
                empty = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int32))
                white = pial = empty
                thickness = np.zeros(0)
            else:
                white, pial, thickness = surfaces.white, surfaces.pial, surfaces.thickness
            for kind, mesh in (("white", white), ("pial", pial)):
                paths[kind].append(save_surface(*mesh, out_path(runtime, f"{hemi}_{kind}.surf.gii"),
                                                hemi, kind))
            paths["thickness"].append(save_shape(thickness, out_path(
                runtime, f"{hemi}_thickness.shape.gii"), hemi))
        self._results.update(paths)
        self._results["out_file"] = out_path(runtime, "t1w_thickness.nii.gz")
        nib.save(like(result.thickness_map, dseg), self._results["out_file"])
        meta = {"Units": "mm", "Method": THICKNESS_METHOD, "SurfaceMethod": SURFACE_METHOD,
                "MaximumThickness": MAX_THICKNESS_MM,
                "NonCorticalExcluded": non_cortical is not None}
        voxel = float(max(dseg.header.get_zooms()[:3]))
        if voxel > COARSE_VOXEL_MM:
            meta["Warning"] = (
                f"{voxel:.1f} mm voxels: sulci narrower than a voxel are not resolved, so "
                "thickness is overestimated; use images of about 1 mm or finer for thickness")
        if notes:
            meta["Notes"] = notes
        self._results["meta"] = meta
        self._results["surface_meta"] = {"Method": SURFACE_METHOD, "Units": "mm",
                                         "CoordinateSystem": "T1w world coordinates (RAS+)"}
        return runtime


class _SurfaceMorphInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="morphometry TSV to complete")
    meta = traits.Dict(desc="its sidecar")
    white = InputMultiObject(File(exists=True), mandatory=True, desc="white surfaces")
    pial = InputMultiObject(File(exists=True), mandatory=True, desc="pial surfaces")
    thickness = InputMultiObject(File(exists=True), mandatory=True,
                                 desc="thickness per white vertex")
    thickness_map = File(exists=True, mandatory=True, desc="thickness map (cortex voxels)")
    atlas_file = File(exists=True, desc="atlas in native space (regional table)")


class _SurfaceMorphOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="morphometry TSV with the surface measures")
    meta = traits.Dict(desc="sidecar with units")


class SurfaceMorphometry(SimpleInterface):
    """Add mesh areas (and the surface mean thickness) to a morphometry table.

    Regional tables (``atlas_file`` given) get ``surface_area_mm2`` and
    ``surface_thickness_mean_mm`` per region; the global table gets the total white and
    pial areas and the mean thickness over the white surface.
    """

    input_spec = _SurfaceMorphInputSpec
    output_spec = _SurfaceMorphOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from brainscale.workflows.anat.morphometry import SURFACE_UNITS
        from brainscale.workflows.anat.surface_thickness import (
            global_surface_measures,
            regional_surface_measures,
        )

        table = pd.read_csv(self.inputs.in_file, sep="\t")
        hemis = {hemi: (*load_surface(w), load_shape(t), *load_surface(p))
                 for hemi, w, t, p in zip(("L", "R"), self.inputs.white, self.inputs.thickness,
                                          self.inputs.pial, strict=True)}
        meta = dict(self.inputs.meta) if isdefined(self.inputs.meta) else {}
        if isdefined(self.inputs.atlas_file):
            thickness_img = nib.load(self.inputs.thickness_map)
            measures = regional_surface_measures(
                {h: v[:3] for h, v in hemis.items()},
                np.asarray(nib.load(self.inputs.atlas_file).dataobj),
                np.asarray(thickness_img.dataobj) > 0, thickness_img.affine,
                table["index"].to_numpy(dtype=np.int64))
            columns = ("surface_area_mm2", "surface_thickness_mean_mm")
        else:
            measures = {k: [v] for k, v in global_surface_measures(hemis).items()}
            columns = tuple(measures)
        for column in columns:
            table[column] = measures[column]
            meta[column] = {"Units": SURFACE_UNITS[column]}
        meta["SurfaceAreaMethod"] = AREA_METHOD
        meta["SurfaceMethod"] = SURFACE_METHOD
        self._results["out_file"] = out_path(runtime, "morph_surface.tsv")
        table.to_csv(self._results["out_file"], sep="\t", index=False, na_rep="n/a")
        self._results["meta"] = json.loads(json.dumps(meta))
        return runtime
