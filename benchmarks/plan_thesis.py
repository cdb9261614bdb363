"""The thesis offline scheduling experiment (Wilkins, Sec. 5.3) with `wattserve plan`.

    .venv/bin/python benchmarks/plan_thesis.py [--queries 200] [--seed 0] [--out DIR]

Seven models on one A100 system (Swing AMD+A100 of the Wilkins et al. sweeps in ../shared/data),
priced by `context`-form fits (relative loss) of those measurements; quality = MMLU 5-shot
(Llama 2 paper Table 3 for Falcon and Llama 2, the Mistral and Mixtral papers); GPUs per
instance as measured (Falcon 40B and Mixtral 3, Llama-2 70B 4, the rest 1). A workload of
``--queries`` queries is drawn log-uniformly over the sweeps' token ranges. The plan is the
thesis formulation: ``zeta * energy_norm - (1 - zeta) * accuracy_norm`` with min-max
normalisation over all (model, query) pairs, token-weighted accuracy A_K * (tau_in + tau_out),
a minimum share of 2% per model (every model keeps an instance) and a 16-GPU budget (two
8-GPU nodes; the seven instances take 14), swept over zeta = 0, 0.1, ..., 1. With
``--gpu-budget 8`` the shares cannot all be met (the command says which budget and why); add
``--min-share 0`` and the budget picks which models to deploy. It runs the real command
(written to DIR: fits.json, queries.csv, targets.yaml, sweep.json) and prints one row per
zeta: energy, token-weighted accuracy and share per model, with round-robin and random beside
it. ``--normalise per-query`` shows the older
normalisation for comparison. Without the shared data it says so and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CSV = ROOT.parent / "shared" / "data" / "energy" / "wilkins_sweeps.csv"
DEVICE = "Swing AMD+A100"
SPEC = [  # short name, model, MMLU 5-shot, GPUs per instance (as measured)
    ("falcon-7b", "Falcon (7B)", 0.262, 1),
    ("falcon-40b", "Falcon (40B)", 0.554, 3),
    ("llama2-7b", "Llama-2 (7B)", 0.453, 1),
    ("llama2-13b", "Llama-2 (13B)", 0.548, 1),
    ("llama2-70b", "Llama-2 (70B)", 0.689, 4),
    ("mistral-7b", "Mistral (7B)", 0.601, 1),
    ("mixtral", "Mixtral (8x7B)", 0.706, 3),
]


def prepare(out: Path, n: int, seed: int, min_share: float) -> None:
    """fits.json (context form, relative loss), queries.csv and targets.yaml in ``out``."""
    from wattserve.fit import fit_groups, save_fits
    from wattserve.fit.io import load_groups
    from wattserve.plan.io import synth_queries

    groups, _ = load_groups([CSV], min_rows=20)
    wanted = {m for _, m, _, _ in SPEC}
    fits = fit_groups(
        [g for g in groups if g.device == DEVICE and g.model in wanted],
        forms=["context"],
        quantities=["energy_j", "runtime_s"],
        loss="relative",
    )
    save_fits(fits, out / "fits.json")
    synth_queries(CSV, n, seed).to_csv(out / "queries.csv", index=False)
    lines = ["fits: fits.json", "targets:"]
    for name, model, acc, gpus in SPEC:
        lines.append(
            f'  - {{name: {name}, model: "{model}", device: "{DEVICE}", quality: {acc}, '
            f"gpus_per_instance: {gpus}, min_share: {min_share}}}"
        )
    (out / "targets.yaml").write_text("\n".join(lines) + "\n")


def run_plan(out: Path, args: argparse.Namespace) -> dict:
    from wattserve.cli import main

    argv = [
        "plan",
        "--queries",
        str(out / "queries.csv"),
        "--targets",
        str(out / "targets.yaml"),
        "--objective",
        "weighted",
        "--zeta",
        "0:1:0.1",
        "--normalise",
        args.normalise,
        "--accuracy-weighting",
        args.accuracy_weighting,
        "--gpu-budget",
        str(args.gpu_budget),
        "--solver",
        "milp",
        "-o",
        str(out / "sweep.json"),
    ]
    print("wattserve " + " ".join(argv[:1] + [a if " " not in a else repr(a) for a in argv[1:]]))
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return json.loads((out / "sweep.json").read_text())


def table(doc: dict) -> str:
    names = [s for s, _, _, _ in SPEC]
    head = "| zeta | energy (kJ) | accuracy | " + " | ".join(names) + " |"
    rows = [head, "|" + "---|" * (3 + len(names))]
    for r in doc["sweep"]:
        share = " | ".join(f"{100 * r['share'][k]:.0f}%" for k in names)
        rows.append(
            f"| {r['zeta']:.1f} | {r['energy_j'] / 1e3:.1f} | {r['mean_quality']:.3f} | {share} |"
        )
    for b in doc["baselines"]:
        if b["plan"] in ("round-robin", "random"):
            rows.append(
                f"| {b['plan']} | {b['energy_j'] / 1e3:.1f} | {b['mean_quality']:.3f} |"
                + " |" * len(names)
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-share", type=float, default=0.02)
    ap.add_argument("--gpu-budget", type=int, default=16)
    ap.add_argument("--normalise", default="global", choices=["global", "per-query"])
    ap.add_argument("--accuracy-weighting", default="tokens", choices=["none", "tokens"])
    ap.add_argument("--out", type=Path, default=None, help="keep the files here")
    args = ap.parse_args()
    if not CSV.is_file():
        sys.exit(f"reference data not found at {CSV}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        prepare(out, args.queries, args.seed, args.min_share)
        doc = run_plan(out, args)
    print(table(doc))


if __name__ == "__main__":
    main()
