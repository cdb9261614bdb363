"""The HTML report: content from a synthetic sweep (real bench store/metrics code, hand-made
timings), and the file opened in headless Chromium over the DevTools protocol."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from wattserve.bench import metrics, store
from wattserve.fit import save_fits
from wattserve.report.data import load
from wattserve.report.html import write_report
from wattserve.sweep.config import SweepConfig
from wattserve.sweep.replicas import plan_replicas
from wattserve.sweep.run import finish_sweep, point_row
from wattserve.types import Completion, ModelFit, Schedule

POINTS = [
    (1, 1, 0.020),
    (1, 4, 0.030),
    (2, 1, 0.025),
    (2, 4, 0.040),
]  # replicas, concurrency, TPOT s


def _point(root: Path, replicas: int, conc: int, tpot: float) -> dict:
    """A point directory as the sweep writes it: run.json, requests.jsonl, energy.csv."""
    pid = f"local-r{replicas}-c{conc}"
    pdir = root / "points" / pid
    pdir.mkdir(parents=True)
    comps, t = [], 100.0
    for i in range(8):
        sent = t + (i // conc) * (0.05 + 15 * tpot)
        first = sent + 0.05 + 0.001 * i
        chunks = tuple(first + k * tpot for k in range(16))
        comps.append(
            Completion(
                f"req-{i}",
                "smollm2-135m",
                "x" * 16,
                32,
                16,
                sent,
                first,
                chunks[-1],
                chunks,
                replica=f"replica-{i % replicas}",
            )
        )
    end = max(c.end_s for c in comps)
    watts = 20.0 + 5 * conc
    energy = [(t + k * 0.1, watts * k * 0.1) for k in range(int((end - t) / 0.1) + 2)]
    from wattserve.types import Measurement

    meas = [
        Measurement(w, t, end, {"cpu": watts * (end - t)}, {"cpu": "modeled"})
        for w in ("whole", "steady")
    ]
    summary = metrics.summarize(comps, meas, goodput_slo_ms={"tpot": 35})
    store.write_json_atomic(
        pdir / "run.json",
        {
            "schema_version": 1,
            "run_id": pid,
            "config": {"model": "smollm2-135m", "label": pid},
            "environment": {"python": "3.11", "cpu": {"model": "test CPU", "cores_logical": 2}},
            "meter": "ModeledCpuMeter",
            "meter_info": {"type": "modeled", "scope": "system"},
            "status": "complete",
            "points": [
                {
                    "label": f"c{conc}",
                    "max_concurrency": conc,
                    "request_rate": None,
                    "summary": summary.to_dict(),
                    "measurements": [m.to_dict() for m in meas],
                }
            ],
        },
    )
    with store.RequestLog(pdir / "requests.jsonl") as log:
        for c in comps:
            log.write(c.to_dict() | {"point": f"c{conc}"})
    (pdir / "energy.csv").write_text(
        "t_s,device,joules,source\n" + "".join(f"{a},cpu,{b},modeled\n" for a, b in energy)
    )
    assignments = {c.request_id: c.replica for c in comps}
    return point_row(
        pid,
        "local",
        plan_replicas(replicas, 2, pin=False),
        conc,
        float("inf"),
        pdir,
        root,
        assignments,
    )


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "sweep"
    rows = [_point(root, *p) for p in POINTS]
    finish_sweep(
        SweepConfig(result_dir=str(root), replicas=[1, 2], max_concurrencies=[1, 4]), root, rows
    )
    fit = ModelFit(
        "smollm2-135m",
        "cpu",
        "runtime_s",
        "linear-interaction",
        ("a0", "a1", "a2"),
        (0.0, 0.02, 0.0),
        units="s",
        cv_r2=0.97,
        cv_mape=0.05,
        n_rows=32,
        input_range=(32, 32),
        output_range=(16, 16),
    )
    save_fits([fit], root / "fits.json")
    sched = Schedule(
        {"q1": "smollm2@cpu", "q2": "smollm2@cpu", "q3": "qwen@cpu"},
        12.5,
        3.0,
        0.8,
        {"smollm2@cpu": 2.0, "qwen@cpu": 1.0},
        "highs-milp",
        "energy",
        0.0,
        0.02,
    )
    baselines = [  # as `wattserve plan` writes them beside the Schedule
        {
            "plan": "plan (highs-milp)",
            "energy_j": 12.5,
            "energy_vs_plan": 1.0,
            "mean_quality": 0.8,
            "makespan_s": 3.0,
            "meets_quality": True,
            "meets_capacity": True,
            "meets_deadlines": True,
        },
        {
            "plan": "all on largest",
            "energy_j": 30.0,
            "energy_vs_plan": 2.4,
            "mean_quality": 0.9,
            "makespan_s": 5.0,
            "meets_quality": True,
            "meets_capacity": True,
            "meets_deadlines": False,
        },
    ]
    queries = [{"id": f"q{i}", "target": "smollm2@cpu", "energy_j": 0.1} for i in range(100)]
    (root / "schedule.json").write_text(
        json.dumps(sched.to_dict() | {"baselines": baselines, "queries": queries})
    )
    return root


@pytest.fixture(scope="module")
def report_html(sweep_dir) -> Path:
    return write_report(sweep_dir, sweep_dir / "report.html")


def test_report_content_is_self_contained(sweep_dir, report_html):
    rd = load(sweep_dir)
    assert rd.kind == "sweep" and len(rd.rows) == 4
    page = report_html.read_text()
    imgs = re.findall(r'<img class="plot" alt="([^"]+)" src="data:image/png;base64,', page)
    assert {"Pareto plot", "Latency distributions", "Throughput and power over time"} <= set(imgs)
    assert any(a.startswith("fit: smollm2-135m @ cpu runtime_s") for a in imgs)
    # nothing that a browser would fetch: no external src/href, no remote URLs at all
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "http://" not in page and "https://" not in page
    rec = rd.recommendation["point"]
    assert (
        rec
        == max(rd.rows, key=lambda r: r["tok_s_per_device"] if r["slo_attainment"] >= 0.9 else -1)[
            "point"
        ]
    )
    assert f"<b>Recommended:</b> {rec}" in page
    assert "Replicas against one replica with all threads" in page and "2 x 1 threads" in page
    assert "highs-milp" in page and "queries per target" in page  # the plan
    assert "planner comparison: the plan against baselines" in page and "all on largest" in page
    assert "100 rows; the first 30 shown" in page
    assert "134515008" in page  # footprint of the model
    for metric in ("TTFT p50 s", "TPOT p50 s", "E2E p50 s", "J/token"):
        assert metric in page


def test_report_of_a_run_directory_and_cli(sweep_dir, tmp_path):
    from typer.testing import CliRunner

    from wattserve.cli import build_app

    run_dir = sweep_dir / "points" / "local-r2-c4"
    out = tmp_path / "run.html"
    res = CliRunner().invoke(build_app(), ["report", str(run_dir), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "wattserve report: run local-r2-c4" in page and page.count('<img class="plot"') >= 3
    assert (
        "Fits (predicted vs measured)" not in page
    )  # fits.json lives in the sweep dir, not the run dir
    res = CliRunner().invoke(
        build_app(),
        [
            "report",
            str(run_dir),
            "-o",
            str(out),
            "--fits",
            str(sweep_dir / "fits.json"),
            "--plan",
            str(sweep_dir / "schedule.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "Fits (predicted vs measured)" in page and "planner comparison" in page
    bad = CliRunner().invoke(build_app(), ["report", str(tmp_path)])
    assert bad.exit_code != 0
    bad = CliRunner().invoke(
        build_app(), ["report", str(run_dir), "--fits", str(tmp_path / "none.json")]
    )
    assert bad.exit_code != 0


# --- headless Chromium ---------------------------------------------------------------------

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,2400",
]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "chromium"],
                capture_output=True,
                timeout=600,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip(
        "headless Chromium not installed and `apt-get install chromium` was not possible here"
    )


async def devtools_open(browser: str, url: str, shot: Path, profile: Path) -> dict:
    """Open ``url``; return script errors, console errors, network requests and page facts."""
    import aiohttp

    proc = await asyncio.to_thread(
        subprocess.Popen,
        [browser, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = (await asyncio.to_thread(proc.stderr.readline)).decode(errors="replace")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(m.group(1)) if m else None
            if not line and proc.poll() is not None:
                break
        assert port, "Chromium did not report a DevTools port"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 10_000))
                events: list[dict] = []

                async def call(method: str, **params):
                    mid = next(ids)
                    await ws.send_json({"id": mid, "method": method, "params": params})
                    while True:
                        msg = await asyncio.wait_for(ws.receive_json(), 30)
                        if msg.get("id") == mid:
                            assert "error" not in msg, msg
                            return msg.get("result", {})
                        events.append(msg)

                for domain in ("Page", "Runtime", "Log", "Network"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=url)
                end = time.monotonic() + 30
                while (
                    not any(e.get("method") == "Page.loadEventFired" for e in events)
                    and time.monotonic() < end
                ):
                    events.append(await asyncio.wait_for(ws.receive_json(), 30))
                facts = await call(
                    "Runtime.evaluate",
                    returnByValue=True,
                    expression="""({
                    ready: document.body.getAttribute('data-ready'),
                    plots: Array.from(document.querySelectorAll('img.plot'))
                        .map(i => [i.alt, i.naturalWidth, i.complete]),
                    tables: document.querySelectorAll('table').length,
                    viewport: document.documentElement.clientWidth,
                    // per table: right edge, its box's right edge, whether the box scrolls
                    edges: Array.from(document.querySelectorAll('table')).map(t => {
                        const box = t.parentElement;
                        const scrolls = getComputedStyle(box).overflowX === 'auto'
                            && box.scrollWidth > box.clientWidth;
                        return [t.getBoundingClientRect().right,
                                box.getBoundingClientRect().right, scrolls];
                    }),
                    // the summary table's "modeled" cells: right edge, the table box's
                    modeled: Array.from(document.querySelectorAll('table.sortable')[0]
                        .querySelectorAll('td'))
                        .filter(td => td.textContent.trim() === 'modeled')
                        .map(td => [td.getBoundingClientRect().right,
                                    td.closest('div').getBoundingClientRect().right]),
                    title: document.title})""",
                )
                # click a sortable header: the inline script must run without errors
                await call(
                    "Runtime.evaluate",
                    expression="document.querySelector('table.sortable th').click()",
                )
                png = await call(
                    "Page.captureScreenshot", format="png", captureBeyondViewport=False
                )
                await asyncio.sleep(0.2)
        import base64

        await asyncio.to_thread(shot.write_bytes, base64.b64decode(png["data"]))
        return {
            "facts": facts["result"]["value"],
            "exceptions": [
                e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"
            ],
            "console_errors": [
                e["params"]
                for e in events
                if e.get("method") == "Runtime.consoleAPICalled"
                and e["params"].get("type") in ("error", "assert")
            ],
            "log_errors": [
                e["params"]["entry"]
                for e in events
                if e.get("method") == "Log.entryAdded"
                and e["params"]["entry"].get("level") == "error"
            ],
            "requests": [
                e["params"]["request"]["url"]
                for e in events
                if e.get("method") == "Network.requestWillBeSent"
            ],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()


def test_report_opens_in_headless_chromium(report_html, tmp_path):
    browser = find_chromium()
    html_path = report_html
    shot = tmp_path / "report.png"
    got = asyncio.run(
        asyncio.wait_for(
            devtools_open(browser, html_path.as_uri(), shot, tmp_path / "profile"), 120
        )
    )
    assert got["exceptions"] == [] and got["console_errors"] == [] and got["log_errors"] == [], got
    assert all(u.startswith(("file:", "data:")) for u in got["requests"]), got["requests"]
    facts = got["facts"]
    assert facts["ready"] == "1" and facts["tables"] >= 5
    plots = {alt: (w, done) for alt, w, done in facts["plots"]}
    for alt in ("Pareto plot", "Latency distributions", "Throughput and power over time"):
        assert plots[alt][1] and plots[alt][0] > 300, plots  # decoded, real width
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # every table fits the window or scrolls in its box; the summary table fits whole, so
    # its energy-source cells ("modeled") are on screen, not behind the right edge
    width = facts["viewport"]
    for right, _, scrolls in facts["edges"]:
        assert right <= width + 0.5 or scrolls, facts["edges"]
    summary_right, _, summary_scrolls = facts["edges"][0]
    assert summary_right <= width + 0.5 and not summary_scrolls, facts["edges"][0]
    assert len(facts["modeled"]) == 4, facts["modeled"]
    for right, box_right in facts["modeled"]:
        assert right <= min(width, box_right) + 0.5, (facts["modeled"], width)
