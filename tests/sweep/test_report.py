"""report.html: self-contained, renders in headless Chromium with its plots, sorts, no console errors.

The browser test drives Chromium with playwright-core (Node). CI installs both:
``apt-get install -y chromium nodejs npm`` and ``npm install -g playwright-core@1``; it sets
``EDGECV_REQUIRE_BROWSER=1`` so that a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgecv.report.html import PLOT_IDS, pareto_front, render_report, write_report

MIB = 2**20


def _row(model, precision, device, macs, latency, size_mib, top1=None, mode="predicted", status="ok", measured=None):
    return {"point": f"{model}_{precision}_tflite", "model": model, "precision": precision, "format": "tflite",
            "device": device, "mode": mode, "status": status, "error": "" if status == "ok" else "convert: boom",
            "macs": macs, "params": 1_000_000, "file_bytes": int(size_mib * MIB), "latency_ms.mean": latency,
            "latency_ms.p90": latency, "prediction.band_low_ms": latency and latency * 0.9,
            "prediction.band_high_ms": latency and latency * 1.1, "prediction.peak_memory_bytes": 50 * MIB,
            "prediction.fits_ram": True, "sqnr_db": 40.0, "top1_agreement": 1.0, "published_top1": top1,
            "published_source": "MobileNets Table 6" if top1 else "", "measured_top1": measured,
            "measured_samples": 450 if measured is not None else None}


# (model, MACs, published top-1): MobileNetV1 at 224 px, paper Table 6
V1 = [("mobilenet_v1_0.25_224", 41e6, 50.6), ("mobilenet_v1_0.50_224", 149e6, 63.7),
      ("mobilenet_v1_0.75_224", 325e6, 68.4), ("mobilenet_v1_1.00_224", 569e6, 70.6)]


def sample_rows() -> list[dict]:
    rows = []
    for dev, speed in (("rpi4", 10.0), ("pixel4", 3.0)):
        for model, macs, top1 in V1:
            rows.append(_row(model, "float32", dev, macs, speed * macs / 41e6, 4 * macs / 1e8, top1))
        # an int8 0.75 that is faster than the float32 0.5: pushes 0.5 float32 off the Pareto front
        rows.append(_row("mobilenet_v1_0.75_224", "int8", dev, 325e6, speed * 3.0, 2.6, 68.4))
    rows.append(_row("mobilenet_v1_0.50_160", "int8", "host", 77e6, 1.2, 1.3, None, mode="measured"))
    # measured top-1 (sweep --eval-data): a float32 and an int8 of one trained model on the host
    rows.append(_row("digits_a", "float32", "host", 10e6, 0.6, 0.9, None, mode="measured", measured=91.0))
    rows.append(_row("digits_a", "int8", "host", 10e6, 0.5, 0.25, None, mode="measured", measured=90.2))
    rows.append(_row("digits_b", "int8", "host", 20e6, 0.7, 0.4, None, mode="measured", measured=89.0))
    rows.append(_row("mobilenet_v1_1.00_128", "int8", "", 0, None, 0, None, mode="error", status="error"))
    return rows


def expected_front(device: str) -> list[tuple[float, float]]:
    """Hand-computed: sort by latency, keep each point more accurate than every faster one."""
    speed = {"rpi4": 10.0, "pixel4": 3.0}[device]
    pts = [(speed * macs / 41e6, top1) for _, macs, top1 in V1] + [(speed * 3.0, 68.4)]
    pts.sort()
    front, best = [], -1.0
    for lat, acc in pts:
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front


def test_pareto_front_by_hand():
    pts = [(1.0, 50.0, "a"), (2.0, 49.0, "b"), (3.0, 60.0, "c"), (3.0, 58.0, "d"), (5.0, 60.0, "e"), (6.0, 70.0, "f")]
    assert [t for _, _, t in pareto_front(pts)] == ["a", "c", "f"]
    assert pareto_front([]) == []


def test_report_is_self_contained(tmp_path):
    from plotly.offline import get_plotlyjs

    page = render_report(sample_rows(), title="t")
    js = get_plotlyjs()
    assert page.count(js) == 1  # plotly.js inlined once
    # no external resources outside plotly.js' own source text: no src=/href= to http(s), no <script src>
    html_only = page.replace(js, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html_only)
    assert "<script src" not in html_only
    for pid in PLOT_IDS:
        assert f'id="{pid}"' in page
    assert page.count("<tr") == 1 + len(sample_rows())
    assert "published" in page and "reference architecture" in page
    out = write_report(sample_rows(), tmp_path / "report.html")
    assert out.read_text() .startswith("<!DOCTYPE html>")


def test_report_without_published_points_says_so():
    rows = [r for r in sample_rows() if not r.get("published_top1")]
    page = render_report(rows)
    assert 'id="plot-top1-latency-empty"' in page
    assert 'id="plot-latency-macs"' in page


def _node_env() -> dict | None:
    node = shutil.which("node")
    if node is None:
        return None
    env = dict(os.environ)
    npm = shutil.which("npm")
    paths = [p for p in env.get("NODE_PATH", "").split(os.pathsep) if p]
    if npm:
        root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
        if root:
            paths.append(root)
    env["NODE_PATH"] = os.pathsep.join(paths)
    ok = subprocess.run([node, "-e", "require('playwright-core')"], env=env, capture_output=True, timeout=60)
    return env if ok.returncode == 0 else None


CHECK_JS = r"""
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage();
  const errors = [];
  const requests = [];
  page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.type() + ': ' + m.text()); });
  page.on('pageerror', e => errors.push('pageerror: ' + e.message));
  page.on('request', r => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) requests.push(r.url()); });
  await page.goto(process.argv[2], { waitUntil: 'load' });
  const ids = JSON.parse(process.argv[3]);
  for (const id of ids) await page.waitForSelector('#' + id + ' .main-svg', { timeout: 30000 });
  const plots = await page.evaluate(ids => ids.map(id => {
    const el = document.getElementById(id);
    return { id, traces: el.data.map(t => ({ name: t.name, x: Array.from(t.x), y: Array.from(t.y) })),
             points: el.querySelectorAll('.scatterlayer .point').length,
             xtype: el.layout.xaxis.type, ytype: el.layout.yaxis.type,
             xticks: Array.from(el.querySelectorAll('.xtick text')).map(t => t.textContent),
             yticks: Array.from(el.querySelectorAll('.ytick text')).map(t => t.textContent) };
  }), ids);
  const col = await page.evaluate(() => Array.from(document.querySelectorAll('#results th')).findIndex(h => h.textContent === 'latency (ms)'));
  const read = () => page.evaluate(c => Array.from(document.querySelectorAll('#results tbody tr')).map(r => r.cells[c].dataset.v), col);
  await page.click('#results th:nth-child(' + (col + 1) + ')');
  const asc = await read();
  await page.click('#results th:nth-child(' + (col + 1) + ')');
  const desc = await read();
  const p90col = await page.evaluate(() => Array.from(document.querySelectorAll('#results th')).findIndex(h => h.textContent === 'p90 (ms)'));
  const modecol = await page.evaluate(() => Array.from(document.querySelectorAll('#results th')).findIndex(h => h.textContent === 'mode'));
  const p90 = await page.evaluate(([c, m]) => Array.from(document.querySelectorAll('#results tbody tr')).map(r => [r.cells[m].textContent, r.cells[c].textContent]), [p90col, modecol]);
  if (process.env.EDGECV_SCREENSHOT) await page.screenshot({ path: process.env.EDGECV_SCREENSHOT, fullPage: true });
  console.log(JSON.stringify({ errors, requests, plots, asc, desc, p90 }));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
"""


def open_in_chromium(report: Path, plot_ids, tmp_path: Path) -> dict:
    """Load ``report`` in headless Chromium; returns console errors, requests, plot data and sort results."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    env = _node_env()
    if chromium is None or env is None:
        reason = "headless-browser test needs chromium and playwright-core (apt-get install chromium nodejs npm; " \
                 "npm install -g playwright-core@1)"
        if os.environ.get("EDGECV_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    script = tmp_path / "check.js"
    script.write_text(CHECK_JS)
    env["CHROMIUM"] = chromium
    r = subprocess.run(["node", str(script), Path(report).resolve().as_uri(), json.dumps(list(plot_ids))], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_report_in_headless_chromium(tmp_path):
    report = write_report(sample_rows(), tmp_path / "report.html", title="browser test")
    res = open_in_chromium(report, PLOT_IDS, tmp_path)
    assert res["errors"] == [], res["errors"]
    assert res["requests"] == [], "the report must not fetch anything"
    plots = {p["id"]: p for p in res["plots"]}
    # every plot rendered its markers (SVG points), on the axes asked for
    ok_rows = [r for r in sample_rows() if r["status"] == "ok"]
    lat_macs = plots["plot-latency-macs"]
    assert (lat_macs["xtype"], lat_macs["ytype"]) == ("log", "log")
    data_traces = [t for t in lat_macs["traces"] if t["x"] != [None]]
    assert sum(len(t["x"]) for t in data_traces) == len(ok_rows)
    assert lat_macs["points"] == len(ok_rows)
    assert plots["plot-size-latency"]["points"] == len(ok_rows)
    # log axes label every tick in full: no label repeats (a bare "5" for both 0.5 and 5), MACs carry units
    for pid in ("plot-latency-macs", "plot-size-latency"):
        for axis in ("xticks", "yticks"):
            labels = plots[pid][axis]
            assert len(labels) >= 2 and len(set(labels)) == len(labels), (pid, axis, labels)
    assert all(t[-1] in "kMG" for t in lat_macs["xticks"]), lat_macs["xticks"]
    # the size plot's legend says what each marker shape means
    names = [t["name"] for t in plots["plot-size-latency"]["traces"]]
    assert "circle: float32" in names and "square: int8" in names
    # predicted rows show "-" for p90 (a prediction has no spread); measured rows show a number
    assert {p90 for mode, p90 in res["p90"] if mode == "predicted"} == {"-"}
    assert all(p90 not in ("-", "") for mode, p90 in res["p90"] if mode == "measured")
    # measured accuracy: its own plot with the hand-computed Pareto front of the host points
    meas = plots["plot-measured-top1-latency"]
    tr = next(t for t in meas["traces"] if t["name"] == "host Pareto front (measured)")
    # (pytest 9.2's approx refuses nested sequences: the coordinates are compared one axis at a time)
    assert (tr["x"], tr["y"]) == (pytest.approx([0.5, 0.6]), pytest.approx([90.2, 91.0]))
    # Pareto front traces equal the hand-computed fronts
    top1 = plots["plot-top1-latency"]
    for dev in ("rpi4", "pixel4"):
        tr = next(t for t in top1["traces"] if t["name"] == f"{dev} Pareto front")
        xs, ys = zip(*expected_front(dev))
        assert (tr["x"], tr["y"]) == (pytest.approx(list(xs)), pytest.approx(list(ys)))
    # clicking the latency header sorts the table (empty cells last), clicking again reverses
    asc = [float(v) for v in res["asc"] if v != ""]
    assert asc == sorted(asc) and len(asc) == len(ok_rows)
    desc = [float(v) for v in res["desc"] if v != ""]
    assert desc == sorted(desc, reverse=True)
