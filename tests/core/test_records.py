"""The shared records (``edgecv.records``): frozen, built by copying, and ``to_dict``/``from_dict`` inverse pairs
that write the JSON schema of ``edgecv profile --json``."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgecv.profiling.api import apply_runner_json
from edgecv.records import EnvInfo, LatencyStats, OpStat, ProfileResult, RuntimeInfo

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
    assert static.latency_ms is None and static.runtime == RuntimeInfo() and static.env == EnvInfo()
    assert static.to_dict()["runtime"] == {} and static.to_dict()["env"] == {}
    assert res.latency_ms == LatencyStats(mean=10.5, std=0.5, min=9.8, p50=10.4, p90=11.2, p99=12.0, runs=50)
    assert (res.init_ms, res.first_inference_ms, res.peak_rss_bytes, res.rss_growth_bytes) == (
        3.25, 20.0, 50_000_000, 1_000_000)
    assert res.runtime == RuntimeInfo(name="litert", version="1.0", threads=2, delegate="xnnpack", warmup_runs=5,
                                      min_time_s=1.0, converted_from="keras", cpus=(0, 1))
    assert res.to_dict()["runtime"] == {"name": "litert", "version": "1.0", "threads": 2, "delegate": "xnnpack",
                                        "warmup_runs": 5, "min_time_s": 1.0, "cpus": [0, 1], "converted_from": "keras"}
    assert res.env == EnvInfo(cpu_model="test") and RUNNER_JSON["env"] == {"cpu_model": "test"}
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


# a target result's JSON as written before runtime, env and target were records (keys and shapes of that version)
OLD_TARGET_JSON = {
    "model": "m.tflite", "format": "tflite", "precision": "int8", "mode": "measured", "device": "ssh://pi",
    "macs": 10, "params": 2, "weights_bytes": 2, "file_bytes": 100, "peak_activation_bytes": 8,
    "latency_ms": {"mean": 10.5, "std": 0.5, "min": 9.8, "p50": 10.4, "p90": 11.2, "p99": 12.0, "runs": 50},
    "init_ms": 3.0, "first_inference_ms": 20.0, "peak_rss_bytes": 5, "rss_growth_bytes": 1,
    "runtime": {"name": "tflite_runtime", "version": "2.14.0", "threads": 4, "delegate": "xnnpack",
                "warmup_runs": 5, "min_time_s": 1.0, "cpus": [2, 3], "a_later_key": 1},
    "ops": [], "unknown_ops": {}, "notes": [], "delegate_partitions": 1,
    "env": {"machine": "aarch64", "cpu_model": "Cortex-A72", "board": "Raspberry Pi 4 Model B Rev 1.4",
            "core": "Cortex-A72", "cpu_part": "0xd08", "hardware": "BCM2835", "isa": {"neon": True, "dotprod": False},
            "features": ["neon"], "cores": 4, "cores_available": 4, "os": "Debian GNU/Linux 12 (bookworm)",
            "kernel": "6.1.0", "python": "3.11.2", "numpy": "1.24.2", "governor": "ondemand", "cpu_mhz": 1800,
            "cpu_max_mhz": 1800, "temp_c": {"cpu-thermal": 51.1}, "throttled": "0x0", "throttled_now": [],
            "runtime": "tflite_runtime", "runtime_version": "2.14.0", "temp_c_before": {"cpu-thermal": 48.7},
            "target": "ssh://pi", "inputs": [{"name": "x", "shape": [1, 96, 96, 3], "dtype": "int8"}]},
    "prediction": None,
    "target": {
        "verify": {"samples": 2, "images": "photos", "preprocessing": "sidecar", "host_runtime": "litert 2.3.0",
                   "target_runtime": "tflite_runtime 2.14.0",
                   "vs_host": {"sqnr_db": 38.2, "bit_exact": False, "top1_agreement": 0.5, "max_abs_error": 0.1,
                               "samples": 2},
                   "diverges": True, "warnings": ["the target's runtime computes this file differently"]},
        "sustained": {"duration_s": 2.0, "interval_s": 1.0,
                      "intervals": [{"t_s": 1.0, "runs": 90, "p50_ms": 10.0, "p90_ms": 11.0, "temp_c": None,
                                     "cpu_mhz": None, "throttled": None}],
                      "burst_p50_ms": 10.0, "steady_p50_ms": 10.5, "unavailable": ["temperature (/sys/class/thermal)"],
                      "slowdown_pct": 5.0},
        "op_timings": {"available": False, "reason": "no per-op source", "ops": [], "by_class_ms": {}},
    },
}


def test_a_record_written_before_the_typed_parts_loads_and_writes_the_same_keys():
    res = ProfileResult.from_dict(json.loads(json.dumps(OLD_TARGET_JSON)))
    assert res.runtime.name == "tflite_runtime" and res.runtime.cpus == (2, 3)
    assert res.env.isa == {"neon": True, "dotprod": False} and res.env.features == ("neon",)
    assert res.env.inputs[0].shape == (1, 96, 96, 3) and res.env.throttled_now == ()
    v = res.target.verify
    assert v.vs_host.sqnr_db == 38.2 and v.diverges and v.vs_reference is None
    assert res.target.sustained.intervals[0].runs == 90 and res.target.op_timings.available is False
    d = res.to_dict()
    want = {k: v for k, v in OLD_TARGET_JSON["runtime"].items() if k != "a_later_key"}  # unknown keys are dropped
    assert d["runtime"] == want
    assert d["env"] == OLD_TARGET_JSON["env"] and d["target"] == OLD_TARGET_JSON["target"]
    assert set(d) == set(OLD_TARGET_JSON)
    assert ProfileResult.from_dict(json.loads(json.dumps(d))) == res


def test_typed_parts_are_frozen_and_empty_parts_write_empty_objects():
    from edgecv.records import EnvInfo, RuntimeInfo, TargetDetails

    res = _static()
    assert not res.runtime and not res.env and not res.target
    d = res.to_dict()
    assert (d["runtime"], d["env"], d["target"], d["prediction"]) == ({}, {}, {}, None)
    for rec in (RuntimeInfo(name="litert"), EnvInfo(cores=2), TargetDetails()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(rec, "threads", 1)
    # the fingerprint keys come as a set: one known, the others written as null (as the runner writes them)
    assert EnvInfo(cores=2).to_dict()["os"] is None and "serial" not in EnvInfo(cores=2).to_dict()
    assert RuntimeInfo(converted_from="keras").to_dict() == {"converted_from": "keras"}
    assert RuntimeInfo(cpus="0-1,3").cpus == (0, 1, 3)  # a --cpus value (benchmark_model's records)


def test_sweep_records_are_checked_against_the_typed_parts():
    from edgecv.validate import record_problem

    good = OLD_TARGET_JSON
    assert record_problem(good, ProfileResult) is None
    bad = json.loads(json.dumps(good))
    bad["env"]["cores"] = "four"
    assert "env" in record_problem(bad, ProfileResult)
    bad = json.loads(json.dumps(good))
    bad["target"]["sustained"]["intervals"] = [{"t_s": 1.0}]
    assert "target" in record_problem(bad, ProfileResult)
