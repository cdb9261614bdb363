"""``wattserve simulate --fits FITS --trace TRACE --router ROUTER``: fitted joules, the trained
router's decisions and the gateway's cache objects; totals equal a direct replay through
``ResponseCache`` + ``Router``; a served run's request log and a run directory are traces."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from routing_support import easy_prompt, energy_fit, hard_prompt, train_router, write_fits
from wattserve.cache import ResponseCache
from wattserve.cli import main
from wattserve.fit import predict
from wattserve.route import Router
from wattserve.sim.request_trace import load_request_trace, trace_row
from wattserve.types import Request

FITS = [energy_fit("weak", 0.2, 0.01, 0.001), energy_fit("strong", 1.0, 0.05, 0.004)]
PROMPTS = [easy_prompt(i) for i in range(4)] + [hard_prompt(i) for i in range(4)]


def run_cli(args, capsys):
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def make_rows(n=80, seed=3):
    """Requests over 8 prompts with skewed popularity; token counts fixed per prompt; a few
    name a model, a few a router threshold, the rest ``auto``."""
    rng = np.random.default_rng(seed)
    pop = np.array([8, 6, 5, 4, 3, 2, 2, 1], dtype=float)
    rows = []
    for t, q in enumerate(rng.choice(len(PROMPTS), size=n, p=pop / pop.sum())):
        model = "auto"
        if t % 10 == 3:
            model = "weak"
        elif t % 10 == 7:
            model = "router-tfidf-0.9"
        rows.append(
            {
                "request_id": f"r{t}",
                "model": model,
                "prompt": PROMPTS[q],
                "input_tokens": 12 + 3 * int(q),
                "output_tokens": 20 + 10 * int(q),
                "text": "x" * (30 + int(q)),
                "sent_s": float(t),
                "energy_j": 1.0,
            }
        )
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simfit")
    return SimpleNamespace(
        tmp=tmp,
        router=train_router(tmp),
        fits=write_fits(tmp / "fits.json", FITS),
        trace=write_jsonl(tmp / "trace.jsonl", make_rows()),
    )


def direct_replay(rows, router, policy, capacity):
    """The gateway's loop written out: cache lookup, router pick, fitted joules, put."""
    fits = {f.model: f for f in FITS}
    cache = ResponseCache(policy, capacity_entries=capacity)
    total, hits, answers = 0.0, 0, {}
    for r in rows:
        key = (r["model"], r["prompt"], r["output_tokens"])
        if cache.get(key) is not None:
            hits += 1
            continue
        req = Request(id=r["request_id"], prompt=r["prompt"], max_tokens=r["output_tokens"])
        if r["model"] == "auto":
            model = router.route(req).model
        elif r["model"].startswith("router-"):
            model = router.with_threshold(float(r["model"].rsplit("-", 1)[1])).route(req).model
        else:
            model = r["model"]
        j = float(predict(fits[model], r["input_tokens"], r["output_tokens"], warn=False))
        total += j
        answers[model] = answers.get(model, 0) + 1
        cache.put(key, model, cost=j, size=len(r["text"]) + 64)
    return total, hits, answers


def test_totals_equal_a_direct_replay(files, capsys):
    out = files.tmp / "result.json"
    res = run_cli(
        [
            "simulate",
            "--trace",
            str(files.trace),
            "--fits",
            str(files.fits),
            "--router",
            str(files.router),
            "--policy",
            "lec",
            "--policy",
            "gdsf",
            "--policy",
            "lru",
            "--capacity",
            "3",
            "--format",
            "json",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert "costs from training" in doc["config"]["router"]
    router = Router.load(files.router)
    rows = make_rows()
    by_policy = {r["policy"]: r for r in doc["rows"]}
    assert set(by_policy) == {"lec", "gdsf", "lru"}
    for policy, got in by_policy.items():
        total, hits, answers = direct_replay(rows, router, policy, 3)
        assert got["total_j"] == pytest.approx(total, rel=1e-12)
        assert got["hits"] == hits and got["misses"] == len(rows) - hits
        assert got["answers"] == answers
        assert got["traced_j"] == pytest.approx(len(rows))
    # the router chose both models, and LEC ranking by routed joules changed the total
    assert set(by_policy["lru"]["answers"]) == {"weak", "strong"}
    assert by_policy["lec"]["total_j"] != by_policy["lru"]["total_j"]


def test_a_served_request_log_is_a_trace(files, capsys):
    """Rows written by ``trace_row`` (chat messages, tenants) read back and replay."""
    logged = []
    for r in make_rows(30, seed=5):
        req = Request(
            id=r["request_id"],
            model=r["model"],
            messages=None,
            prompt=r["prompt"],
            max_tokens=r["output_tokens"],
            tenant="acme",
        )
        logged.append(
            trace_row(req, r["input_tokens"], r["output_tokens"], r["text"], energy_j=0.5)
        )
    logged.append({**logged[0], "request_id": "failed", "error": "upstream_failed"})
    path = write_jsonl(files.tmp / "served.jsonl", logged)
    trace = load_request_trace(path)
    assert len(trace) == 30  # the failed request is not replayed
    assert trace[0].request.tenant == "acme" and trace[0].size == len(logged[0]["text"]) + 64
    res = run_cli(
        ["simulate", "--trace", str(path), "--fits", str(files.fits), "--router"]
        + [str(files.router), "--policy", "lec", "--capacity", "4", "--json"],
        capsys,
    )
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)["rows"]
    assert row["requests"] == 30 and row["hits"] + row["misses"] == 30
    assert row["traced_j"] == pytest.approx(15.0)


def test_a_run_directory_with_a_prompts_file(files, capsys):
    """A benchmark's requests.jsonl carries no prompt: --prompts supplies it by request id."""
    run = files.tmp / "run"
    run.mkdir()
    rows = make_rows(40, seed=7)
    bare = [{k: v for k, v in r.items() if k != "prompt"} for r in rows]
    bare.reverse()  # written as requests finish; replayed in send order
    write_jsonl(run / "requests.jsonl", bare)
    prompts = write_jsonl(
        files.tmp / "prompts.jsonl",
        [{"request_id": r["request_id"], "prompt": r["prompt"]} for r in rows],
    )
    args = ["simulate", "--trace", str(run), "--fits", str(files.fits), "--router"]
    args += [str(files.router), "--policy", "lfu", "--capacity", "3", "--json"]
    res = run_cli([*args, "--prompts", str(prompts)], capsys)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)["rows"]
    total, hits, _ = direct_replay(rows, Router.load(files.router), "lfu", 3)
    assert row["total_j"] == pytest.approx(total) and row["hits"] == hits
    res = run_cli(args, capsys)  # no prompts: one line naming the row
    assert res.returncode != 0 and "no prompt or messages" in res.stderr
    assert "Traceback" not in res.stderr


def test_route_all_and_a_table(files, capsys):
    rows = [{**r, "model": "smollm2"} for r in make_rows(20)]
    path = write_jsonl(files.tmp / "one_model.jsonl", rows)
    base = ["simulate", "--trace", str(path), "--fits", str(files.fits)]
    base += ["--router", str(files.router), "--policy", "lec", "--capacity", "2"]
    res = run_cli(base, capsys)
    assert res.returncode != 0 and "does not pick from" in res.stderr
    res = run_cli([*base, "--route-all"], capsys)
    assert res.returncode == 0, res.stderr
    assert "simulated J" in res.stdout and "metered joules in the trace" in res.stdout
    res = run_cli([*base, "--route-all", "--format", "json"], capsys)
    row = json.loads(res.stdout)["rows"][0]
    res = run_cli([*base, "--route-all"], capsys)  # the table's line: simulated vs metered
    want = (row["total_j"] - row["traced_j"]) / row["traced_j"]
    assert f"(simulated vs it: lec {want:+.1%})" in res.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--router", "ROUTER"], "--router replays a --trace with --fits"),
        (["--fits", "FITS", "--router-costs", "magic"], "--router-costs must be"),
        (["--fits", "FITS", "--capacity-bytes", "0"], "--capacity-bytes must be positive"),
        (["--fits", "FITS", "--router", "ROUTER", "--device", "gpu"], "no energy_j fits"),
        (["--fits", "MISSING"], "no such fits file"),
    ],
)
def test_bad_input_is_one_line(files, capsys, extra, message):
    subst = {"ROUTER": str(files.router), "FITS": str(files.fits), "MISSING": "nope.json"}
    args = ["simulate", "--trace", str(files.trace)] + [subst.get(a, a) for a in extra]
    res = run_cli(args, capsys)
    assert res.returncode != 0
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_cost_trace_is_not_a_request_trace(files, capsys):
    path = files.tmp / "costs.csv"
    path.write_text("query,cost_a,cost_b\nq1,1,2\n")
    res = run_cli(["simulate", "--trace", str(path), "--fits", str(files.fits)], capsys)
    assert res.returncode != 0 and "not query + cost_<model> columns" in res.stderr
