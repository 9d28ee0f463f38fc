"""The shared records (``edgecv.records``): frozen, built by copying, and ``to_dict``/``from_dict`` inverse pairs
that write the JSON schema of ``edgecv profile --json``."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgecv.profiling.api import apply_runner_json
from edgecv.records import LatencyStats, OpStat, ProfileResult

OP = OpStat(index=0, type="CONV_2D", op_class="conv", dtype="int8", output_shape=(1, 112, 112, 32),
            macs=112 * 112 * 32 * 27, params=32 * 27 + 32, weight_bytes=32 * 27 + 4 * 32,
            activation_bytes=112 * 112 * 32, input_bytes=224 * 224 * 3, name="conv1", delegated=True)

# what runner.py prints for one measurement (the keys it writes, values made up by hand)
RUNNER_JSON = {
    "latency_ms": {"mean": 10.5, "std": 0.5, "min": 9.8, "p50": 10.4, "p90": 11.2, "p99": 12.0, "runs": 50},
    "init_ms": 3.25, "first_inference_ms": 20.0, "peak_rss_bytes": 50_000_000, "rss_growth_bytes": 1_000_000,
    "runtime": {"name": "litert", "version": "1.0", "threads": 2, "delegate": "xnnpack"},
    "warmup_runs": 5, "cpus": "0-1", "env": {"cpu_model": "test"},
}


def _static() -> ProfileResult:
    return ProfileResult(model="m.tflite", format="tflite", precision="int8", mode="measured", device="host",
                         macs=OP.macs, params=OP.params, weights_bytes=OP.weight_bytes, file_bytes=1234,
                         peak_activation_bytes=OP.activation_bytes, ops=[OP], notes=["one note"],
                         unknown_ops={"CUSTOM": 1})


def test_profile_result_is_frozen_and_its_sequences_are_tuples():
    res = _static()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.latency_ms = None  # type: ignore[misc]
    assert res.ops == (OP,) and res.notes == ("one note",)


def test_apply_runner_json_returns_a_measured_copy_and_leaves_its_input_alone():
    static = _static()
    res = apply_runner_json(static, RUNNER_JSON, min_time_s=1, converted="keras")
    assert static.latency_ms is None and static.runtime == {} and static.env == {}
    assert res.latency_ms == LatencyStats(mean=10.5, std=0.5, min=9.8, p50=10.4, p90=11.2, p99=12.0, runs=50)
    assert (res.init_ms, res.first_inference_ms, res.peak_rss_bytes, res.rss_growth_bytes) == (
        3.25, 20.0, 50_000_000, 1_000_000)
    assert res.runtime == {"name": "litert", "version": "1.0", "threads": 2, "delegate": "xnnpack", "warmup_runs": 5,
                           "min_time_s": 1.0, "converted_from": "keras", "cpus": "0-1"}
    assert res.env == {"cpu_model": "test"} and res.env is not RUNNER_JSON["env"]
    assert res.ops == static.ops and res.macs == static.macs


def test_to_dict_writes_json_arrays_and_from_dict_inverts_it():
    res = apply_runner_json(_static(), RUNNER_JSON)
    d = res.to_dict()
    assert isinstance(d["ops"], list) and isinstance(d["notes"], list)
    text = json.dumps(d)
    assert json.loads(text)["ops"][0]["output_shape"] == [1, 112, 112, 32]
    back = ProfileResult.from_dict(json.loads(text))
    assert back == res
    assert json.dumps(back.to_dict()) == text
    assert "ops" not in res.to_dict(with_ops=False)


def test_a_target_result_without_static_counts_has_none_counts(tmp_path):
    from edgecv.targets import _empty_result

    model = tmp_path / "m.tflite"
    model.write_bytes(b"x" * 7)
    res = _empty_result(str(model), "tflite", "adb:x", None)
    assert (res.macs, res.params, res.weights_bytes, res.peak_activation_bytes, res.file_bytes) == (
        None, None, None, None, 7)
    assert ProfileResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res


def test_op_and_latency_records_round_trip():
    assert OpStat.from_dict(json.loads(json.dumps(OP.to_dict()))) == OP
    lat = LatencyStats(mean=1.0, std=0.0, min=1.0, p50=1.0, p90=1.0, p99=1.0, runs=3)
    assert LatencyStats.from_dict({**lat.to_dict(), "extra": 1}) == lat
