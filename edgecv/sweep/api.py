"""``run_sweep``: the Python API behind ``edgecv sweep``.

Every point of the grid goes through the stages build -> convert + verify -> static profile
(-> measure on the host) and is written as one JSON file, ``DIR/points/<point>-<key>.json``, atomically;
``<key>`` hashes the point's configuration, the options that change its result and the tool versions.
A re-run loads finished points instead of recomputing them (``force=True`` recomputes), so an
interrupted sweep loses only the work in flight. Intermediate stage results (the built ``.keras``, a
converted artifact with its conversion record) are kept too, so a resumed point restarts at the stage
where it stopped. Device predictions are computed from the stored static profiles at the end (pure
Python, milliseconds), so adding a device to a finished sweep converts nothing.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecv.errors import EdgecvError, one_line
from edgecv.fileio import ensure_output_dir, remove_stale_parts_in, write_json_atomic, write_text_atomic
from edgecv.formats import CALIBRATED
from edgecv.records import MeasuredTop1, jsonable
from edgecv.sweep.grid import SCHEMA, Point, SweepSpec, point_key

RESULTS_SCHEMA = "edgecv.sweep.results/v1"
POLL_S = 0.25


class SweepFailed(EdgecvError):
    """Some points failed (recorded in the results); exit code 1."""

    exit_code = 1


class Progress:
    """Silent progress sink; the CLI passes a rich implementation."""

    def start(self, stages: dict[str, int]) -> None:
        pass

    def advance(self, stage: str, n: int = 1) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SweepResult:
    """What ``run_sweep`` did: its files, the point counts, the result rows (``results.json``'s ``rows``) and the
    errors of the points that failed."""

    output_dir: str
    results_csv: str
    results_json: str
    points: int
    cached: int
    computed: int
    failed: int
    rows: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    seconds: float = 0.0
    report: str | None = None  # the HTML report's path (None: report=False)

    def __post_init__(self) -> None:
        for name in ("rows", "errors"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)


def tool_versions() -> dict[str, str]:
    from edgecv.conversion.records import versions

    return versions()


@dataclass(frozen=True)
class _Paths:
    root: Path

    @property
    def points(self) -> Path:
        return self.root / "points"

    @property
    def stages(self) -> Path:
        return self.root / "work" / "stages"

    @property
    def models(self) -> Path:
        return self.root / "work" / "models"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def point_file(self, p: Point, key: str) -> Path:
        return self.points / f"{p.id}-{key[:16]}.json"

    def stage_file(self, p: Point, key: str, stage: str) -> Path:
        return self.stages / f"{p.id}-{key[:16]}.{stage}.json"

    def artifact(self, p: Point) -> Path:
        return self.artifacts / f"{p.model}_{p.precision}.{p.format}"

    def keras(self, model: str, vkey: str) -> Path:
        return self.models / f"{model}-{vkey[:12]}.keras"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _conversion_problem(rec: Any, p: Point | None = None) -> str | None:
    from edgecv.conversion.records import ConversionResult
    from edgecv.validate import record_problem

    why = record_problem(rec, ConversionResult)
    if why is None and p is not None and (rec["precision"], rec["format"]) != (p.precision, p.format):
        why = f"a {rec['precision']} {rec['format']} conversion"
    return why


def _profile_problem(rec: Any) -> str | None:
    from edgecv.records import ProfileResult
    from edgecv.validate import record_problem

    return record_problem(rec, ProfileResult)


BUILD_FIELDS = {"model": str, "path": str, "macs": int, "params": int, "params_deployed": int, "input_shape": list}


def _build_problem(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    for k, t in BUILD_FIELDS.items():
        if not isinstance(rec.get(k), t) or isinstance(rec.get(k), bool):
            return f"{k!r} is {rec.get(k)!r:.60}"
    return None


def point_problem(rec: Any, p: Point, key: str) -> str | None:
    """Why a point's record cannot be used (damaged, another schema or key), or None. Records are untrusted
    files in the output folder: a record that is not exactly what this code writes is redone, never read."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    if rec.get("schema") != SCHEMA or rec.get("key") != key:
        return "another schema or key"
    if rec.get("point") != asdict(p):
        return "another point"
    status = rec.get("status")
    if status == "error":
        return None if isinstance(rec.get("error"), str) else "an error without a message"
    if status != "ok":
        return f"status {status!r}"
    why = (_build_problem(rec.get("build")) or _conversion_problem(rec.get("conversion"), p)
           or _profile_problem(rec.get("static"))
           or (None if rec.get("host") is None else _profile_problem(rec.get("host"))))
    if why is None:
        try:
            point_rows(rec, ())
        except Exception as exc:  # noqa: BLE001 - whatever the row maker trips on
            why = f"{type(exc).__name__}: {one_line(exc)[:300]}"
    return why


def prepare_calibration(spec: SweepSpec, root: Path) -> str | None:
    """The ``calib`` value for int8 points: the user's, or sample photos shipped with scikit-image written
    once as PNG files to ``DIR/calib_photos`` (the converter reads a folder of images)."""
    if spec.calib is not None or not set(CALIBRATED) & set(spec.precisions):
        return spec.calib
    folder = root / "calib_photos"
    want = spec.samples + spec.verify_samples
    existing = sorted(folder.glob("photo_*.png")) if folder.is_dir() else []
    if len(existing) >= want:
        return str(folder)
    import numpy as np
    from PIL import Image

    from edgecv.conversion.calibration import sample_images
    from edgecv.fileio import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    pixels = sample_images(want, 256, seed=0)
    for i, img in enumerate(pixels):
        with atomic_path(folder / f"photo_{i:04d}.png") as tmp:
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp, format="PNG")
    return str(folder)


def _check_spec(spec: SweepSpec) -> None:
    if not spec.points:
        raise EdgecvError("the grid is empty")
    if spec.calib is not None and spec.calib != "synthetic":
        from edgecv.conversion.calibration import precheck

        precheck(spec.calib)


def run_sweep(spec: SweepSpec, output_dir: str | os.PathLike = "edgecv_sweep", *, executor: str = "local",
              jobs: int = 1, address: str | None = None, force: bool = False, progress: Progress | None = None,
              report: bool = True, eval_data: str | os.PathLike | None = None,
              eval_labels: str | os.PathLike | None = None) -> SweepResult:
    """Run (or resume) the sweep ``spec`` into ``output_dir``; returns the results and their files.

    Raises :class:`SweepFailed` (after writing the results) if some points failed. ``eval_data`` (a folder of
    class sub-folders or a .npz, see :mod:`edgecv.evaluation`) adds each artifact's measured top-1 on it.
    """
    t0 = time.perf_counter()
    progress = progress or Progress()
    _check_spec(spec)
    if eval_data is not None:
        from edgecv.evaluation.data import open_source

        open_source(eval_data, eval_labels, option="--eval-data")  # a bad folder fails before any work
    root = ensure_output_dir(output_dir, option="-o")
    paths = _Paths(Path(root))
    for d in (paths.points, paths.stages, paths.models, paths.artifacts):
        d.mkdir(parents=True, exist_ok=True)
    for d in (paths.points, paths.stages, paths.models, paths.artifacts, Path(root)):
        remove_stale_parts_in(d)  # of writers killed mid-write; a concurrent sweep's live ones are left alone
    versions = tool_versions()
    vkey = hashlib.sha256(json.dumps({"build": "bn-recalibrated/v1", "versions": versions}
                                     | ({"weights": spec.weights_sha256} if spec.weights_sha256 else {}),
                                     sort_keys=True).encode()).hexdigest()

    keys = {p: point_key(p, spec, versions) for p in spec.points}
    done: dict[Point, dict] = {}
    damaged = 0
    if not force:
        for p, k in keys.items():
            f = paths.point_file(p, k)
            rec = _read_json(f)
            if point_problem(rec, p, k) is None:
                done[p] = rec
            elif f.exists():
                damaged += 1  # unreadable, truncated or not what this code writes: redone
    todo = [p for p in spec.points if p not in done]
    todo_models = sorted({p.model for p in todo}, key=[m for m in spec.models].index)
    n_measure = len(todo) if spec.measure_host else 0
    pred_points = [p for p in spec.points if p.format == "tflite"]
    stages = {"build": len(spec.models), "convert": len(spec.points), "profile": len(spec.points)}
    if spec.measure_host:
        stages["measure"] = len(spec.points)
    if spec.devices:
        stages["predict"] = len(pred_points) * len(spec.devices)
    progress.start(stages)
    progress.advance("build", len(spec.models) - len(todo_models))
    progress.advance("convert", len(done))
    progress.advance("profile", len(done))
    if spec.measure_host:
        progress.advance("measure", len(spec.points) - n_measure)
    if done:
        progress.message(f"{len(done)} of {len(spec.points)} points cached in {paths.points}")
    if damaged:
        progress.message(f"{damaged} damaged point record(s) in {paths.points}: recomputing them")

    errors: list[str] = []
    computed = 0
    if todo:
        calib = prepare_calibration(spec, Path(root))
        computed, errs = _run_points(spec, todo, keys, paths, vkey, calib, executor, jobs, address, force,
                                     progress, done, versions)
        errors += errs

    measured: dict[str, dict] = {}
    if eval_data is not None:
        from edgecv.evaluation.sweep import measure

        arts = {paths.point_file(p, keys[p]).name: done[p]["conversion"]["path"] for p in spec.points
                if p in done and done[p].get("status") == "ok"}
        progress.message(f"measuring top-1 of {len(arts)} artifact(s) on {eval_data}")
        top1 = measure(arts, eval_data, paths.stages, labels=eval_labels)
        measured = {name: m.to_dict() for name, m in top1.items()}

    # --- predictions and results ----------------------------------------------------------------
    rows = []
    for p in spec.points:
        rec = done.get(p)
        if rec is None:
            continue
        if measured:
            rec = {**rec, "evaluation": measured.get(paths.point_file(p, keys[p]).name)}
        rows += point_rows(rec, spec.devices, spec.threads, on_predicted=lambda: progress.advance("predict"))
    progress.close()
    res_json = Path(root) / "results.json"
    res_csv = Path(root) / "results.csv"
    failed = sum(1 for p in spec.points if p not in done or done[p].get("status") != "ok")
    for p in spec.points:
        if p in done and done[p].get("status") != "ok":
            errors.append(f"{p.id}: {done[p].get('error')}")
    meta = {"schema": RESULTS_SCHEMA, "spec": _spec_dict(spec), "versions": versions,
            "points": len(spec.points), "failed": failed,
            "note": "published_top1: ImageNet top-1 published for the trained reference architecture "
                    "(models/paper_figures.csv), not measured on these untrained models",
            "point_files": [paths.point_file(p, keys[p]).name for p in spec.points if p in done],
            "rows": rows}
    if measured:
        meta["measured"] = measured  # point file name -> measured top-1 (percent) on eval_data
    write_json_atomic(res_json, meta)
    write_text_atomic(res_csv, rows_to_csv(rows))
    report_path = None
    if report:
        from edgecv.report.html import write_report

        report_path = str(write_report(rows, Path(root) / "report.html", title=f"edgecv sweep: {spec.family}",
                                       meta=meta))
    result = SweepResult(output_dir=str(root), results_csv=str(res_csv), results_json=str(res_json),
                         points=len(spec.points), cached=len(spec.points) - len(todo), computed=computed,
                         failed=failed, rows=tuple(rows), errors=tuple(errors), report=report_path,
                         seconds=round(time.perf_counter() - t0, 3))
    if failed:
        err = SweepFailed(f"{failed} of {len(spec.points)} point(s) failed (results written to {res_json}); "
                          f"first: {errors[0] if errors else 'unknown'}")
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


def _spec_dict(spec: SweepSpec) -> dict:
    d = asdict(spec)
    d.pop("points", None)
    return d


def _run_points(spec, todo, keys, paths, vkey, calib, executor, jobs, address, force, progress, done,
                versions) -> tuple[int, list[str]]:
    """Drive the stage graph of the points still to do on the executor; fills ``done``."""
    from edgecv.sweep.executors import make_executor
    from edgecv.sweep.work import run_stage

    errors: list[str] = []
    computed = 0
    state: dict[Point, dict] = {p: {} for p in todo}
    by_model: dict[str, list[Point]] = {}
    for p in todo:
        by_model.setdefault(p.model, []).append(p)
    built: dict[str, dict] = {}
    pending: dict[Any, tuple[str, Any]] = {}  # handle -> (stage, point or model)
    to_measure: list[Point] = []

    def finish(p: Point, status: str, error: str | None = None) -> None:
        nonlocal computed
        st = state[p]
        rec = {"schema": SCHEMA, "key": keys[p], "point": asdict(p), "status": status, "error": error,
               "build": built.get(p.model), "conversion": st.get("convert"), "static": st.get("profile"),
               "host": st.get("measure"), "versions": versions, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}
        write_json_atomic(paths.point_file(p, keys[p]), rec)
        done[p] = rec
        computed += 1

    def fail(p: Point, stage: str, out: dict) -> None:
        msg = f"{stage}: {out['error']}"
        if out.get("kind") == "edgecv":  # deterministic (bad input, unsupported op): cached as an error
            finish(p, "error", msg)
        else:
            errors.append(f"{p.id}: {msg}")
        order = ["build", "convert", "profile"] + (["measure"] if spec.measure_host else [])
        for later in order[order.index("build" if stage == "load" else stage) + 1:]:
            progress.advance(later)

    ex = make_executor(executor, jobs, address)
    slots = ex.slots()
    # Tasks wait in a ready queue and go to the executor `slots` at a time, later stages first, so points
    # finish one after another (a killed sweep keeps them) instead of all conversions before any profile.
    ready: list[tuple[int, int, str, Any, tuple]] = []
    seq = iter(range(1 << 62))
    priority = {"profile": 0, "convert": 1, "build": 2, "load": 2}

    def fill() -> None:
        while ready and len(pending) < slots:
            _, _, stage, subject, args = heapq.heappop(ready)
            pending[ex.submit(run_stage, stage, *args)] = (stage, subject)

    try:
        def submit(stage: str, subject: Any, *args: Any) -> None:
            heapq.heappush(ready, (priority[stage], next(seq), stage, subject, args))

        def start_convert(p: Point) -> None:
            # resume: a converted artifact with its record from an interrupted run
            sf = paths.stage_file(p, keys[p], "convert")
            rec = None if force else _read_json(sf)
            if _conversion_problem(rec, p) is None and Path(rec["path"]).is_file():
                state[p]["convert"] = rec
                progress.advance("convert")
                start_profile(p)
                return
            submit("convert", p, built[p.model]["path"], p.precision, p.format, str(paths.artifact(p)), calib,
                   spec.samples, spec.verify_samples, spec.file_of(p.model) is not None)

        def start_profile(p: Point) -> None:
            sf = paths.stage_file(p, keys[p], "profile")
            rec = None if force else _read_json(sf)
            if _profile_problem(rec) is None:
                state[p]["profile"] = rec
                progress.advance("profile")
                after_profile(p)
                return
            submit("profile", p, state[p]["convert"]["path"])

        def after_profile(p: Point) -> None:
            if spec.measure_host:
                to_measure.append(p)
            else:
                finish(p, "ok")

        for model, pts in by_model.items():
            src = spec.file_of(model)
            if src is not None:  # a user's trained .keras file: loaded (in a child first), not built
                submit("load", model, model, src[0])
                continue
            kp = paths.keras(model, vkey)
            if kp.is_file() and not force and _build_problem(rec := _read_json(kp.with_suffix(".json"))) is None:
                built[model] = rec
                progress.advance("build")
                for p in pts:
                    start_convert(p)
            else:
                submit("build", model, model, str(kp), 0, spec.weights)

        fill()
        while pending:
            finished = ex.wait(pending, POLL_S)
            for h in finished:
                stage, subject = pending.pop(h)
                out = ex.result(h)
                if stage in ("build", "load"):
                    progress.advance("build")
                    model = subject
                    if not out["ok"]:
                        for p in by_model[model]:
                            fail(p, stage, out)
                        continue
                    built[model] = out["value"]
                    if stage == "build":  # a loaded user's file is not cached (nor written beside)
                        write_json_atomic(Path(out["value"]["path"]).with_suffix(".json"), out["value"])
                    for p in by_model[model]:
                        start_convert(p)
                else:  # "convert" or "profile" of one point
                    progress.advance(stage)
                    p = subject
                    if not out["ok"]:
                        fail(p, stage, out)
                        continue
                    state[p][stage] = out["value"]
                    write_json_atomic(paths.stage_file(p, keys[p], stage), out["value"])
                    (start_profile if stage == "convert" else after_profile)(p)
            fill()
    except BaseException:
        ex.shutdown(cancel=True)
        raise
    ex.shutdown()

    # Host measurements: one at a time, after the conversions, so they do not compete for the cores.
    if to_measure:
        from edgecv.sweep.work import run_stage as run_local

        for p in to_measure:
            out = run_local("measure", state[p]["convert"]["path"], spec.host_threads, spec.host_runs,
                            spec.host_min_time_s)
            progress.advance("measure")
            if not out["ok"]:
                fail(p, "measure", out)
                continue
            state[p]["measure"] = out["value"]
            finish(p, "ok")
    return computed, errors


# --- rows ---------------------------------------------------------------------------------------

def _profile_from_dict(d: dict):
    from edgecv.records import ProfileResult

    return ProfileResult.from_dict(d)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys; lists of scalars -> "a; b"."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = "; ".join(str(x) for x in v) if all(not isinstance(x, (dict, list)) for x in v) else json.dumps(v)
        else:
            out[key] = v
    return out


def point_rows(rec: dict, devices: tuple[str, ...] | list[str], threads: int | None = None,
               on_predicted=None) -> list[dict[str, Any]]:
    """The result rows of one finished point: host (measured), each device (predicted), or static only."""
    from edgecv.devices.predict import predict_profile
    from edgecv.report.published import lookup_point

    pt = rec["point"]
    conv = rec.get("conversion") or {}
    ver = conv.get("verification") or {}
    build = rec.get("build") or {}
    # published ImageNet figures belong to the reference architectures only (not a user's file, not 10 classes)
    pub = lookup_point(pt)
    ev = MeasuredTop1.from_dict(rec.get("evaluation"))
    shape = build.get("input_shape") or [None]
    base = {"point": f"{pt['model']}_{pt['precision']}_{pt['format']}", "family": pt["family"],
            "model": pt["model"], "width": pt["width"] or None, "resolution": pt["resolution"] or shape[0],
            "variant": pt.get("variant") or "", "status": rec.get("status"), "error": rec.get("error") or "",
            "artifact": conv.get("path", ""), "sqnr_db": ver.get("sqnr_db"),
            "top1_agreement": ver.get("top1_agreement"), "max_abs_error": ver.get("max_abs_error"),
            "convert_seconds": conv.get("convert_seconds"), "params_deployed_keras": build.get("params_deployed"),
            "published_top1": pub.top1 if pub else None, "published_source": pub.source if pub else "",
            "measured_top1": ev.top1 if ev else None, "measured_samples": ev.samples if ev else None,
            "measured_data": ev.data if ev else ""}
    if rec.get("status") != "ok":
        return [{**base, "format": pt["format"], "precision": pt["precision"], "device": "", "mode": "error"}]
    static = rec["static"]
    rows = []

    def row(prof: dict) -> dict:
        d = {k: v for k, v in prof.items() if k not in ("ops", "model")}
        flat = flatten(d)
        return {**base, **flat}

    if rec.get("host"):
        rows.append(row(rec["host"]))
    if pt["format"] == "tflite":
        sp = _profile_from_dict(static)
        for dev in devices:
            pred = predict_profile(sp, dev, threads=threads)
            rows.append(row(pred.to_dict(with_ops=False)))
            if on_predicted:
                on_predicted()
    if not rows:
        rows.append(row(static))
    return rows


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def load_results(path: str | os.PathLike) -> dict:
    """A sweep's ``results.json`` (the file or its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise EdgecvError(f"--from-sweep: no results.json in {str(path)!r}")
    data = _read_json(p)
    if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA:
        raise EdgecvError(f"--from-sweep: {str(p)!r} is not an edgecv sweep results file")
    return data
