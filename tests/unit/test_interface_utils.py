"""The helpers shared by the thin interfaces of every modality."""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, File, traits

from brainscale.workflows.interface_utils import defined_or_none


class _Spec(BaseInterfaceInputSpec):
    path = File(desc="an optional file")
    count = traits.Int(desc="an optional number")
    names = traits.List(traits.Str, desc="an optional list")


def test_undefined_input_is_none_and_load_is_not_called():
    spec = _Spec()
    calls = []
    assert defined_or_none(spec.path) is None
    assert defined_or_none(spec.count, lambda value: calls.append(value)) is None
    assert calls == []


def test_defined_input_is_returned_or_loaded():
    spec = _Spec(path="/data/vsm.nii.gz", count=0, names=[])
    assert defined_or_none(spec.path) == "/data/vsm.nii.gz"
    assert defined_or_none(spec.path, lambda value: value.upper()) == "/DATA/VSM.NII.GZ"
    # a defined but false value is not mistaken for a missing one
    assert defined_or_none(spec.count) == 0
    assert defined_or_none(spec.names, list) == []
