"""The manifest's records (archc/deploy/manifest.py): the JSON archc writes reads back into the same records and the
same JSON; what is not a manifest archc writes is refused in one sentence, and `load_package` says to compile the
package again. TVM-free: these need no library."""
from __future__ import annotations

import copy

import pytest
from helpers import MANIFEST, fake_package, raises

from archc.deploy.manifest import BuildReport, Manifest, ManifestError
from archc.runtime import PackageError, load_package


def test_the_json_reads_back_into_records_and_the_same_json():
    m = Manifest.from_json(copy.deepcopy(MANIFEST))
    assert m.inputs[0].shape == (1, 1, 32, 32) and m.inputs[0].dims == "1×1×32×32"
    assert m.build.kernels_archc == 3 and m.build.tuned is False and m.build.cpu_schedules
    assert not m.target.is_arm and not m.target.is_cuda
    assert m.to_json() == MANIFEST


def test_a_verification_reads_back_and_an_unknown_status_is_refused():
    data = copy.deepcopy(MANIFEST) | {"verification": {
        "status": "passed", "reference": "onnxruntime 1.32.0", "inputs": "random normal, seed 0", "tolerance": 1e-4,
        "max_rel_diff": 2.5e-7, "worst_output": "fc", "emulated": False, "device": None, "divergence": None,
        "note": None}}
    m = Manifest.from_json(copy.deepcopy(data))
    assert m.verification is not None and m.verification.passed and m.to_json() == data
    data["verification"]["status"] = "fine"
    with pytest.raises(ManifestError, match="'verification'"):
        Manifest.from_json(data)


def test_a_gpu_build_has_no_tuning_fields():
    report = BuildReport(compile_seconds=2.0, parallel_runtime="archc")
    assert report.to_json() == {"tuned": False, "compile_seconds": 2.0, "parallel_runtime": "archc"}
    assert not BuildReport.from_json(report.to_json()).cpu_schedules


@pytest.mark.parametrize(("change", "says"), [
    ({"library": "../other.native/other.so"}, "not a file name in the package folder"),
    ({"library": "/etc/passwd"}, "not a file name in the package folder"),
    ({"inputs": [{"name": "image", "shape": [1, 0, 32], "dtype": "float32"}]}, "not a list of positive integers"),
    ({"inputs": [{"name": "image", "shape": [1, 1, 32, 32], "dtype": "complex64"}]}, "which archc does not build"),
    ({"inputs": []}, "no inputs or no outputs"),
    ({"target": {"name": "native"}}, "the target has no 'tvm'"),
    ({"manifest_version": 99}, "this archc reads version 1"),
    ({"build": {"trials_now": "many"}}, "not one archc writes"),
])
def test_what_is_not_a_manifest_is_refused_in_one_sentence(change, says, tmp_path):
    data = {**copy.deepcopy(MANIFEST), **change}
    with pytest.raises(ManifestError, match=says):
        Manifest.from_json(data)
    fake_package(tmp_path, data)
    with raises("corrupt-package", PackageError, naming=f"'{tmp_path}'"):
        load_package(tmp_path)


def test_a_manifest_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with raises("corrupt-package", PackageError, naming=(f"'{tmp_path}'", "JSON")):  # and the manifest's reason
        load_package(tmp_path)
