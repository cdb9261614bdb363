"""The tables and goal lines ``loadgen_rate.py`` prints from its measured results."""

from __future__ import annotations

from typing import Any


def line(r: dict[str, Any]) -> str:
    if "skip" in r:
        return f"skipped: {r['skip']}"
    s = f"max {r['rate']:.0f} req/s" if "rate" in r else ""
    if r.get("cpu_us_per_req"):
        s += f" ({r['cpu_us_per_req']:.0f} us client CPU per request)"
    if r.get("achieved_rate"):
        s += f"{'; ' if s else ''}sent at {r['achieved_rate']:.0f} req/s"
        if r.get("completed_rate"):
            s += f", completed {r['completed_rate']:.0f} req/s"
    if r.get("send_err_us"):
        e = r["send_err_us"]
        s += f"; send error p50 {e['p50']:.0f} us, p99 {e['p99']:.0f} us, max {e['max']:.0f} us"
    if r.get("send_err_ms"):
        e = r["send_err_ms"]
        s += f"; send error p50 {e['p50']:.3f} ms, p99 {e['p99']:.3f} ms, max {e['max']:.2f} ms"
    return s


def report(
    results: dict[str, dict[str, Any]],
    fixed: dict[str, dict[float, list[dict[str, Any]]]],
    top: dict[str, Any] | None,
) -> None:
    ours_r = results.get("wattserve")
    if ours_r is not None:
        max_table(results, ours_r)
    fixed_table(fixed, top)
    if ours_r is not None:
        goals(results, ours_r)
    for rate, limit in ((500.0, 50.0), (2000.0, 200.0)):
        rs = fixed["wattserve"].get(rate) or []
        if rs:
            worst = max(x["send_err_us"]["p99"] for x in rs)
            ok = "met" if worst <= limit else "NOT met"
            print(
                f"goal p99 send error <= {limit:g} us at {rate:g} req/s in every round: "
                f"worst {worst:.0f} us -> {ok}"
            )


def max_table(results: dict[str, dict[str, Any]], ours_r: dict[str, Any]) -> None:
    print("(ours and bare aiohttp: best of the alternating rounds, worst in brackets)")
    print("| load generator | max req/s | ours / it | client CPU per request |")
    print("|---|---|---|---|")
    for name, r in results.items():
        if "skip" in r:
            print(f"| {name} | skipped: {r['skip'][:120]} | | |")
            continue
        ratio = ours_r["rate"] / r["rate"] if r["rate"] else float("nan")
        worst = ours_r["worst_rate"] / r["rate"] if r["rate"] else float("nan")
        cpu = f"{r['cpu_us_per_req']:.0f} us" if r.get("cpu_us_per_req") else "n/a"
        print(f"| {name} | {r['rate']:.0f} | {ratio:.2f}x ({worst:.2f}x) | {cpu} |")


def fixed_table(
    fixed: dict[str, dict[float, list[dict[str, Any]]]], top: dict[str, Any] | None
) -> None:
    print("\n| sender | target req/s | sent req/s | send error p50 / p99 / max (us), each round |")
    print("|---|---|---|---|")
    for name, by_rate in fixed.items():
        for rate, rs in by_rate.items():
            errs = "; ".join(
                f"{x['send_err_us']['p50']:.0f} / {x['send_err_us']['p99']:.0f} / "
                f"{x['send_err_us']['max']:.0f}"
                for x in rs
            )
            sent = min(x["achieved_rate"] for x in rs)
            print(f"| {name} | {rate:g} | {sent:.0f} | {errs} |")
    if top and top.get("rate"):
        e = top["send_err_us"]
        print(
            f"| wattserve (max sustainable) | {top['rate']:.0f} | {top['achieved_rate']:.0f} | "
            f"{e['p50']:.0f} / {e['p99']:.0f} / {e['max']:.0f} |"
        )
    print()


def goals(results: dict[str, dict[str, Any]], ours_r: dict[str, Any]) -> None:
    for name, target in (("vllm bench serve", 3.0), ("guidellm", 10.0), ("bare aiohttp", 1.0)):
        r = results.get(name, {})
        if "rate" in r:
            got = ours_r["rate"] / r["rate"]
            ok = "met" if got >= target else "NOT met"
            print(f"goal ours >= {target:g}x {name} req/s: {got:.2f}x -> {ok}")
        else:
            print(f"goal ours >= {target:g}x {name} req/s: no figure ({r.get('skip', 'absent')})")
    b = results.get("bare aiohttp", {})
    if "cpu_us_per_req" in b:
        a, c = ours_r["cpu_us_per_req"], b["cpu_us_per_req"]
        ok = "met" if a <= c else "NOT met"
        print(f"goal client CPU per request <= bare aiohttp: {a:.0f} vs {c:.0f} us -> {ok}")
