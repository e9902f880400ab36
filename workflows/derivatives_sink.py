"""The Nipype face of :func:`brainscale.derivatives.save_derivative`: one sink node type."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from brainscale.derivatives import DATATYPES, save_derivative

_SINK_ENTITIES = (
    "space", "cohort", "res", "den", "atlas", "roi", "label", "hemi", "from_", "to", "mode",
    "model", "param", "bundle", "meas", "stat", "desc", "acq", "rec", "dir", "run", "task",
)


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc="derivatives folder (output_dir)")
    in_file = File(exists=True, mandatory=True, desc="the file to save")
    source_file = traits.Either(
        traits.Str,
        traits.List(traits.Str, minlen=1),
        mandatory=True,
        desc="raw BIDS file the result derives from, or every raw file it combines",
    )
    datatype = traits.Enum(*DATATYPES, mandatory=True, desc="anat, func, dwi or figures")
    suffix = traits.Str(mandatory=True, desc="BIDS suffix")
    extension = traits.Str(".nii.gz", usedefault=True, desc="file extension")
    meta_dict = traits.Dict(desc="extra sidecar content")
    for _entity in _SINK_ENTITIES:
        locals()[_entity] = traits.Str(desc=f"BIDS entity {_entity.rstrip('_')}")
    del _entity


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the written derivative")


class DerivativesDataSink(SimpleInterface):
    """Save a workflow result into the derivatives tree (Nipype node).

    Entities come from ``source_file`` (subject, session, task, run...; those shared by
    all files when it is a list) and from the entity inputs (``space``, ``desc``,
    ``atlas``, ``from_``...); the write is atomic and a JSON sidecar with ``Sources``
    (every source file) and ``meta_dict`` is written beside it.
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec

    def _run_interface(self, runtime):
        entities = {}
        for name in _SINK_ENTITIES:
            value = getattr(self.inputs, name)
            if isdefined(value):
                entities[name.rstrip("_")] = value
        meta = self.inputs.meta_dict if isdefined(self.inputs.meta_dict) else None
        self._results["out_file"] = str(
            save_derivative(
                self.inputs.in_file,
                self.inputs.base_directory,
                source_file=self.inputs.source_file,
                suffix=self.inputs.suffix,
                extension=self.inputs.extension,
                datatype=self.inputs.datatype,
                entities=entities,
                meta=meta,
            )
        )
        return runtime
