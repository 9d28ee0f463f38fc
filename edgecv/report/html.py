"""``report.html``: one self-contained page (plotly.js inlined, no network) with the sweep's results.

Sections: a sortable results table; latency vs MACs per device (log-log); model size vs latency; and,
for the standard variants, the *published* ImageNet top-1 of the reference architecture vs predicted
latency with each device's Pareto front marked.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from edgecv.fileio import write_text_atomic

MIB = 2**20
PLOT_IDS = ("plot-latency-macs", "plot-size-latency", "plot-top1-latency", "plot-measured-top1-latency")
SYMBOLS = {"float32": "circle", "float16": "diamond", "int8": "square", "dynamic": "triangle-up",
           "int16x8": "cross"}

# (column in the rows, header, formatter)
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model", "text"),
    ("precision", "precision", "text"),
    ("format", "format", "text"),
    ("device", "device", "text"),
    ("mode", "mode", "text"),
    ("macs", "MACs (M)", "mega"),
    ("params", "params (M)", "mega"),
    ("file_bytes", "file (MiB)", "mib"),
    ("latency_ms.mean", "latency (ms)", "num"),
    ("prediction.band_low_ms", "band low (ms)", "num"),
    ("prediction.band_high_ms", "band high (ms)", "num"),
    ("latency_ms.p90", "p90 (ms)", "num"),
    ("peak_memory", "peak memory (MiB)", "mib"),
    ("prediction.fits_ram", "fits RAM", "text"),
    ("sqnr_db", "SQNR vs Keras (dB)", "num"),
    ("top1_agreement", "top-1 agreement", "num"),
    ("published_top1", "published top-1 (%)*", "num"),
    ("measured_top1", "measured top-1 (%)**", "num"),
    ("status", "status", "text"),
)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def peak_memory(row: dict) -> float | None:
    return _num(row.get("prediction.peak_memory_bytes")) or _num(row.get("peak_rss_bytes"))


def _fmt(v: Any, kind: str) -> tuple[str, str]:
    """(text, sort key) of a cell."""
    if kind == "text" or v is None or v == "":
        text = "" if v is None else str(v)
        return text, text
    f = _num(v)
    if f is None:
        return str(v), str(v)
    if kind == "mega":
        return f"{f / 1e6:,.2f}", repr(f)
    if kind == "mib":
        return f"{f / MIB:,.2f}", repr(f)
    return (f"{f:,.3g}" if abs(f) < 100 else f"{f:,.1f}"), repr(f)


def _si(v: float) -> str:
    """A full tick label: 0.5, 5, 50, 500, 5k, 20M, 1G (never a bare digit standing for a decade)."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def log_ticks(values: list[float], si: bool = False) -> dict:
    """Explicit tick values and full labels for a log axis that spans ``values`` (1-2-5 per decade; 1-3 or 1 for
    wide ranges; every integer mantissa for narrow ones): plotly's own minor labels are bare digits ("5" marks
    both 0.5 and 5)."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return {}
    vmin, vmax = min(vals) / 1.2, max(vals) * 1.2
    lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
    ticks: list[float] = []
    for steps in ((1,), (1, 3), (1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [float(f"{m * 10.0 ** e:.6g}") for e in range(lo - 1, hi + 1) for m in steps]
        ticks = [t for t in ticks if vmin <= t <= vmax]
        if len(ticks) >= 4 or (steps[-1] == 9 and ticks):
            break
    if len(ticks) < 2:  # a range narrower than the finest mantissas: a few even steps
        step = float(f"{(vmax - vmin) / 3:.1g}")
        ticks = [round(k * step, 12) for k in range(math.ceil(vmin / step), math.floor(vmax / step) + 1)]
    return dict(tickvals=ticks, ticktext=[_si(t) if si else f"{t:g}" for t in ticks])


def _precision_legend(fig, precisions) -> None:
    """Legend entries (no data) that say what each marker shape means."""
    import plotly.graph_objects as go

    for prec in precisions:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{SYMBOLS.get(prec, 'circle')}: {prec}",
                                 legendgroup="marker", legendgrouptitle_text="marker = precision",
                                 marker=dict(symbol=SYMBOLS.get(prec, "circle"), size=9, color="#777"),
                                 hoverinfo="skip", showlegend=True))


def pareto_front(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Points (latency, accuracy, tag) not dominated by a faster-or-equal and at-least-as-accurate point;
    returned by increasing latency."""
    best = -math.inf
    front = []
    for lat, acc, tag in sorted(points, key=lambda t: (t[0], -t[1])):
        if acc > best:
            front.append((lat, acc, tag))
            best = acc
    return front


def _accuracy_traces(fig, rows: list[dict], key: str, color: dict, *, name, front_name: str, text) -> None:
    """Accuracy ``key`` of ``rows`` against latency, a trace per device (marker: precision) with its Pareto front
    (open circles on a dotted staircase), then the precision legend. ``name(device, its rows)`` names a device's
    trace, ``"<device> <front_name>"`` its front; ``text(row)`` is a point's hover text."""
    import plotly.graph_objects as go

    for dev in dict.fromkeys(r["device"] for r in rows):
        sel = [r for r in rows if r["device"] == dev]
        fig.add_trace(go.Scatter(x=[_num(r["latency_ms.mean"]) for r in sel], y=[_num(r[key]) for r in sel],
                                 mode="markers", name=name(dev, sel), legendgroup=dev,
                                 marker=dict(symbol=[SYMBOLS.get(r["precision"], "circle") for r in sel], size=9,
                                             color=color[dev]),
                                 text=[text(r) for r in sel], hoverinfo="text"))
        front = pareto_front([(_num(r["latency_ms.mean"]), _num(r[key]), r) for r in sel])
        fig.add_trace(go.Scatter(x=[f[0] for f in front], y=[f[1] for f in front], mode="lines+markers",
                                 name=f"{dev} {front_name}", legendgroup=dev,
                                 line=dict(shape="hv", dash="dot", color=color[dev]),
                                 marker=dict(size=13, symbol="circle-open", line=dict(width=2)),
                                 text=[f"Pareto: {f[2]['model']} {f[2]['precision']}" for f in front],
                                 hoverinfo="text"))
    if rows:
        _precision_legend(fig, dict.fromkeys(r["precision"] for r in rows))


def _figures(rows: list[dict]) -> list[tuple[str, str, Any | None, str]]:
    """(div id, title, plotly figure or None, note) for each plot."""
    import plotly.graph_objects as go

    ok = [r for r in rows if r.get("status") == "ok" and _num(r.get("latency_ms.mean"))]
    devices = list(dict.fromkeys(r["device"] for r in ok))
    from plotly.colors import qualitative

    palette = qualitative.D3
    color = {d: palette[i % len(palette)] for i, d in enumerate(devices)}
    symbols = SYMBOLS
    precisions = list(dict.fromkeys(r["precision"] for r in ok))
    layout = dict(template="plotly_white", height=480, margin=dict(l=60, r=20, t=50, b=60),
                  legend=dict(title="device / precision"))

    def hover(r: dict) -> str:
        lat = _num(r["latency_ms.mean"])
        return (f"{r['model']} {r['precision']} {r['format']}<br>{r['device']} ({r['mode']}): {lat:.2f} ms"
                f"<br>{_num(r.get('macs')) / 1e6:.1f} M MACs, {(_num(r.get('file_bytes')) or 0) / MIB:.2f} MiB")

    out = []
    fig = go.Figure()
    for dev in devices:
        for prec in dict.fromkeys(r["precision"] for r in ok):
            sel = [r for r in ok if r["device"] == dev and r["precision"] == prec and _num(r.get("macs"))]
            if sel:
                fig.add_trace(go.Scatter(x=[_num(r["macs"]) for r in sel], y=[_num(r["latency_ms.mean"]) for r in sel],
                                         mode="markers", name=f"{dev} / {prec}", legendgroup=dev,
                                         marker=dict(symbol=symbols.get(prec, "circle"), size=9, color=color[dev]),
                                         text=[hover(r) for r in sel], hoverinfo="text"))
    fig.update_xaxes(type="log", title="MACs (multiply-accumulates per inference)",
                     **log_ticks([_num(r.get("macs")) for r in ok], si=True))
    fig.update_yaxes(type="log", title="latency (ms): measured on host, predicted on devices",
                     **log_ticks([_num(r["latency_ms.mean"]) for r in ok]))
    fig.update_layout(title="Latency vs MACs per device (log-log)", **layout)
    out.append((PLOT_IDS[0], "Latency vs MACs", fig if ok else None, ""))

    fig = go.Figure()
    for dev in devices:
        sel = [r for r in ok if r["device"] == dev and _num(r.get("file_bytes"))]
        if sel:
            fig.add_trace(go.Scatter(x=[_num(r["latency_ms.mean"]) for r in sel],
                                     y=[_num(r["file_bytes"]) / MIB for r in sel], mode="markers", name=dev,
                                     marker=dict(symbol=[symbols.get(r["precision"], "circle") for r in sel], size=9,
                                                 color=color[dev]),
                                     text=[hover(r) for r in sel], hoverinfo="text"))
    _precision_legend(fig, precisions)
    fig.update_xaxes(type="log", title="latency (ms)", **log_ticks([_num(r["latency_ms.mean"]) for r in ok]))
    fig.update_yaxes(type="log", title="model file size (MiB)",
                     **log_ticks([(_num(r.get("file_bytes")) or 0) / MIB for r in ok]))
    fig.update_layout(title="Model size vs latency (colour: device, marker: precision)", **layout)
    out.append((PLOT_IDS[1], "Model size vs latency", fig if ok else None, ""))

    pub = [r for r in ok if r.get("mode") == "predicted" and _num(r.get("published_top1"))]
    fig = go.Figure()
    _accuracy_traces(fig, pub, "published_top1", color, name=lambda dev, sel: f"{dev}", front_name="Pareto front",
                     text=lambda r: hover(r) + f"<br>published top-1 {r['published_top1']}% "
                                               f"({html.escape(str(r.get('published_source', '')))})")
    fig.update_xaxes(type="log", title="predicted latency (ms)",
                     **log_ticks([_num(r["latency_ms.mean"]) for r in pub]))
    fig.update_yaxes(title="published ImageNet top-1 (%) of the reference architecture")
    fig.update_layout(title="Published top-1 (paper figures of the reference architecture) vs predicted latency",
                      **layout)
    note = ("Accuracy here is the ImageNet top-1 <b>published</b> for the trained reference architecture "
            "(models/paper_figures.csv: MobileNets Tables 6/7, MobileNetV2 slim README, EfficientNet Table 2). "
            "It is not measured: the sweep's models have untrained weights and int8/float16 conversion "
            "usually costs a little accuracy. Open circles joined by a dotted line: the Pareto front "
            "(no other point is both faster and more accurate).")
    if not pub:
        note = ("No point of this sweep is a standard variant with a published ImageNet top-1 "
                "(models/paper_figures.csv), or no device was predicted.")
    out.append((PLOT_IDS[2], "Published top-1 vs predicted latency", fig if pub else None, note))
    out.append(_measured_figure(ok, color, layout, hover))
    return out


def _measured_figure(ok: list[dict], color: dict, layout: dict, hover) -> tuple[str, str, Any | None, str]:
    """Top-1 measured on the user's labelled data (``sweep --eval-data``) vs latency, with Pareto fronts."""
    import plotly.graph_objects as go

    meas = [r for r in ok if _num(r.get("measured_top1")) is not None]
    fig = go.Figure()
    _accuracy_traces(fig, meas, "measured_top1", color, front_name="Pareto front (measured)",
                     name=lambda dev, sel: f"{dev} ({sel[0].get('mode', '')} latency)",
                     text=lambda r: hover(r) + f"<br>measured top-1 {_num(r['measured_top1']):.2f}% on "
                                               f"{int(_num(r.get('measured_samples')) or 0)} images")
    fig.update_xaxes(type="log", title="latency (ms)", **log_ticks([_num(r["latency_ms.mean"]) for r in meas]))
    fig.update_yaxes(title="measured top-1 (%) on the evaluation data")
    fig.update_layout(title="Measured top-1 (sweep --eval-data) vs latency", **layout)
    data = next((r.get("measured_data") for r in meas if r.get("measured_data")), "")
    n = next((int(_num(r.get("measured_samples")) or 0) for r in meas), 0)
    note = (f"Top-1 <b>measured</b> by running each artifact in its runtime on {n} labelled images"
            f"{' from ' + html.escape(str(data)) if data else ''} (edgecv evaluate); the published figures above "
            "are paper values for ImageNet. Open circles joined by a dotted line: the Pareto front.")
    if not meas:
        note = "No measured accuracy in this sweep (run it with --eval-data DIR on trained models)."
    return PLOT_IDS[3], "Measured top-1 vs latency", fig if meas else None, note


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #ddd;padding:3px 7px;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
td.n{text-align:right;font-variant-numeric:tabular-nums} tr.err td{color:#a00}
.note{color:#555;max-width:70em;font-size:0.92em} .wrap{overflow-x:auto;max-height:70vh}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var numeric = th.dataset.type === 'num';
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        if (numeric) {
          x = x === '' ? Infinity : parseFloat(x); y = y === '' ? Infinity : parseFloat(y);
          return asc ? x - y : y - x;
        }
        return asc ? x.localeCompare(y) : y.localeCompare(x);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _table(rows: list[dict]) -> str:
    head = "".join(f'<th data-type="{"text" if kind == "text" else "num"}">{html.escape(title)}</th>'
                   for _, title, kind in TABLE_COLUMNS)
    body = []
    for r in rows:
        cells = []
        for col, _, kind in TABLE_COLUMNS:
            v = peak_memory(r) if col == "peak_memory" else r.get(col)
            text, key = _fmt(v, kind)
            if col == "latency_ms.p90" and r.get("mode") == "predicted":
                text, v = "-", None  # a prediction has no spread: p90 would only repeat the latency
            if kind != "text" and _num(v) is None:
                key = ""
            cls = ' class="n"' if kind != "text" else ""
            cells.append(f'<td{cls} data-v="{html.escape(key)}">{html.escape(text)}</td>')
        cls = ' class="err"' if r.get("status") != "ok" else ""
        title = f' title="{html.escape(r.get("error", ""))}"' if r.get("error") else ""
        body.append(f"<tr{cls}{title}>{''.join(cells)}</tr>")
    return (f'<div class="wrap"><table class="sortable" id="results"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def render_report(rows: list[dict], title: str = "edgecv report", meta: dict | None = None) -> str:
    """The report page as a string (self-contained: plotly.js is inlined once)."""
    import plotly
    from plotly.offline import get_plotlyjs

    import edgecv

    meta = meta or {}
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">edgecv {html.escape(edgecv.__version__)}, plotly {html.escape(plotly.__version__)}; '
             f"{len(rows)} rows; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
             "Host rows are measured on this machine; device rows are predicted from the device profile "
             "(band = the predictor's leave-one-out error). Click a column header to sort.</p>"]
    for div_id, heading, fig, note in _figures(rows):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if fig is None:
            parts.append(f'<p class="note" id="{div_id}-empty">{note or "No data to plot."}</p>')
            continue
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                                 config={"displaylogo": False, "responsive": True}))
        if note:
            parts.append(f'<p class="note">{note}</p>')
    parts.append("<h2>Results</h2>")
    parts.append('<p class="note">* published ImageNet top-1 of the trained reference architecture '
                 "(paper figures), shown only for standard variants; not measured on these models. "
                 "SQNR and top-1 agreement compare each artifact with its Keras model on held-out photos; a sweep "
                 "builds untrained models (BatchNorm statistics set on photos), whose softmax is nearly uniform, "
                 "so int8 figures there are low and say little about a trained model's int8 accuracy. "
                 "** top-1 measured on the labelled data given to sweep --eval-data (trained models only). "
                 "p90 is '-' for predicted rows (a prediction has no run-to-run spread).</p>")
    parts.append(_table(rows))
    if meta.get("spec"):
        parts.append("<h2>Sweep</h2><pre>" + html.escape(json.dumps(meta.get("spec"), indent=1)) + "</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
            + "\n".join(parts) + f"<script>{_SORT_JS}</script></body></html>\n")


def write_report(rows: list[dict], path: str | os.PathLike, title: str = "edgecv report",
                 meta: dict | None = None) -> Path:
    """Write ``report.html`` atomically and return its path."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        from edgecv.errors import EdgecvError

        raise EdgecvError("the HTML report needs plotly (pip install 'edgecv[report]')") from None
    return write_text_atomic(path, render_report(rows, title=title, meta=meta))
