"""Damaged sweep records: the point records (``DIR/points/*.json``), stage records (``work/stages`` in DIR) and build
records (``work/models/*.json`` in DIR) are files in the output folder, untrusted on read. A record that is not exactly
what the sweep writes (truncated, wrong types, missing keys, another schema) is redone, never taken as
``status: ok``; the re-run completes and every record is whole again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecv.sweep.grid import build_spec

GRID = dict(alpha="0.25", resolution="32,64", precision="float32,int8", device="rpi4", samples=4, verify_samples=2)


class _Recorder:
    def __init__(self):
        self.messages: list[str] = []

    def start(self, stages):
        pass

    def advance(self, stage, n=1):
        pass

    def message(self, text):
        self.messages.append(text)

    def close(self):
        pass


def _spec():
    return build_spec("mobilenet", **GRID)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from edgecv.sweep.api import run_sweep

    out = tmp_path_factory.mktemp("records") / "out"
    res = run_sweep(_spec(), out, report=False)
    assert res.computed == 4 and res.failed == 0
    return out, res


def _copy(finished, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(finished[0], dst)
    return dst


def _records(out: Path) -> dict[str, Path]:
    """point id (model_precision_format) -> its record file"""
    return {p.name.rsplit("-", 1)[0]: p for p in (out / "points").glob("*.json")}


def _edit(path: Path, fn) -> None:
    rec = json.loads(path.read_text())
    fn(rec)
    path.write_text(json.dumps(rec))


def _wrong_types(rec):
    rec["static"]["macs"] = "many"
    rec["conversion"]["verification"] = [1, 2]


def _missing_keys(rec):
    del rec["static"]
    del rec["conversion"]["path"]


def _damage_points(records: dict[str, Path]) -> dict[str, str]:
    ids = sorted(records)
    kinds = {ids[0]: "truncated", ids[1]: "wrong-types", ids[2]: "missing-keys", ids[3]: "foreign-schema"}
    for pid, kind in kinds.items():
        f = records[pid]
        if kind == "truncated":
            f.write_text(f.read_text()[: len(f.read_text()) // 2])
        elif kind == "wrong-types":
            _edit(f, _wrong_types)
        elif kind == "missing-keys":
            _edit(f, _missing_keys)
        else:  # valid JSON of another program, under the name the sweep looks for
            f.write_text(json.dumps({"schema": "someone.else/v3", "status": "ok", "rows": [{"macs": 1}]}))
    return kinds


def _check_whole(out: Path, res, original) -> None:
    from edgecv.sweep.api import point_problem
    from edgecv.sweep.grid import point_key

    spec = _spec()
    records = _records(out)
    assert len(records) == 4
    keys = {p.id: point_key(p, spec, _versions()) for p in spec.points}
    for p in spec.points:
        rec = json.loads(records[p.id].read_text())
        assert point_problem(rec, p, keys[p.id]) is None
        assert rec["status"] == "ok"
        # the artifact the record names is on disk with the size the record states
        assert Path(rec["conversion"]["path"]).stat().st_size == rec["conversion"]["file_bytes"]
    assert res.failed == 0 and len(res.rows) == 4
    macs = {r["point"]: r["macs"] for r in res.rows}
    assert macs == {r["point"]: r["macs"] for r in original.rows}  # the same graphs as the undamaged run
    assert all(isinstance(m, int) and m > 0 for m in macs.values())


def _versions():
    from edgecv.sweep.api import tool_versions

    return tool_versions()


def test_damaged_point_records_are_redone(finished, tmp_path):
    from edgecv.sweep.api import run_sweep

    out = _copy(finished, tmp_path)
    records = _records(out)
    kinds = _damage_points(records)
    progress = _Recorder()
    res = run_sweep(_spec(), out, report=False, progress=progress)
    assert res.computed == 4 and res.cached == 0, (res.computed, res.cached, kinds)
    assert any("4 damaged point record(s)" in m for m in progress.messages), progress.messages
    _check_whole(out, res, finished[1])
    res = run_sweep(_spec(), out, report=False)  # and now they are cached again
    assert res.cached == 4 and res.computed == 0


@pytest.mark.parametrize("kind", ["empty", "json-array", "error-without-message", "status-unknown"])
def test_damaged_point_record_shapes_are_redone(finished, tmp_path, kind):
    from edgecv.sweep.api import run_sweep

    out = _copy(finished, tmp_path)
    f = sorted(_records(out).items())[0][1]
    if kind == "empty":
        f.write_text("")
    elif kind == "json-array":
        f.write_text("[1, 2, 3]")
    elif kind == "error-without-message":
        _edit(f, lambda r: r.update(status="error", error=None))
    else:
        _edit(f, lambda r: r.update(status="fine"))
    res = run_sweep(_spec(), out, report=False)
    assert res.computed == 1 and res.cached == 3
    _check_whole(out, res, finished[1])


def test_damaged_stage_and_build_records_are_redone(finished, tmp_path):
    """Without their point records, points are rebuilt from the stage records: damaged ones are recomputed."""
    from edgecv.sweep.api import run_sweep

    out = _copy(finished, tmp_path)
    for f in (out / "points").glob("*.json"):
        f.unlink()
    stages = sorted(f for f in out.rglob("*.json") if f.parent.name == "stages")
    convert = [s for s in stages if s.name.endswith(".convert.json")]
    profile = [s for s in stages if s.name.endswith(".profile.json")]
    assert len(convert) == 4 and len(profile) == 4
    _edit(convert[0], lambda r: r.update(path=5))  # wrong type
    _edit(convert[1], lambda r: r.update(precision="int4"))  # another conversion than the point's
    profile[2].write_text(profile[2].read_text()[:100])  # truncated
    _edit(profile[3], lambda r: r.pop("macs"))  # missing key
    builds = sorted(f for f in out.rglob("*.json") if f.parent.name == "models")
    assert len(builds) == 2
    _edit(builds[0], lambda r: r.update(path=["not", "a", "path"]))
    res = run_sweep(_spec(), out, report=False)
    assert res.computed == 4
    _check_whole(out, res, finished[1])
    for s in convert + profile:  # rewritten whole
        assert isinstance(json.loads(s.read_text()).get("macs" if s in profile else "path"), (int, str))
