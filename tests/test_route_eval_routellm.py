"""Router evaluation with RouteLLM's definitions: CPT by linear interpolation on the strong-call
share, APGR by the trapezoid rule, thresholds from 0% to 100% strong calls, graded labels, and
``route eval --router FILE`` on a router that ``route train`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wattserve.cli import main
from wattserve.errors import ConfigError
from wattserve.route import Router, TfidfScorer, evaluate_router, load_labelled_csvs
from wattserve.route.calibrate import threshold_for_share
from wattserve.route.evaluate import apgr, cpt, oracle_curve, ranking_points

MODELS = ("weak", "strong")
# four prompts; predicted gain q_strong - q_weak per prompt, and who answers well
GAIN = {"a": 0.1, "b": 0.5, "c": 0.3, "d": -0.2}
WEAK = np.array([1.0, 0.0, 0.0, 1.0])
STRONG = np.array([1.0, 1.0, 1.0, 0.0])
TEXTS = ["a", "b", "c", "d"]


class GainScorer:
    """Predicted quality with a known gain per prompt: q_weak = 0.5 - g/2, q_strong = 0.5 + g/2."""

    models = MODELS

    def predict_quality(self, texts: list[str]) -> np.ndarray:
        g = np.array([GAIN[t] for t in texts])
        return np.column_stack([0.5 - g / 2, 0.5 + g / 2])


def _router(objective: str = "gain") -> Router:
    return Router(MODELS, [1.0, 10.0], GainScorer(), objective=objective)  # type: ignore[arg-type]


def test_hand_computed_curve_cpt_and_apgr():
    # strong calls in order b, c, a, d: quality 2/4, 3/4, 4/4, 4/4, 3/4 at shares 0..1
    res = evaluate_router(_router(), TEXTS, np.column_stack([WEAK, STRONG]))
    assert res["points"]["x"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert res["points"]["quality"] == [0.5, 0.75, 1.0, 1.0, 0.75]
    assert (res["weak_quality"], res["strong_quality"]) == (0.5, 0.75)
    # trapezoid: 0.25 * (0.625 + 0.875 + 1 + 0.875) = 0.84375; APGR (0.84375 - 0.5) / 0.25
    assert res["auc"] == pytest.approx(0.84375)
    assert res["apgr"] == pytest.approx(1.375)
    # CPT(p): target 0.5 + 0.25 p reached on the first segment (0, 0.5) -> (0.25, 0.75)
    assert res["cpt20"] == pytest.approx(0.05)
    assert res["cpt50"] == pytest.approx(0.125)
    assert res["cpt95"] == pytest.approx(0.2375)
    assert res["cpt95_random"] == 0.95
    assert res["cost_to_95pct_strong"] == pytest.approx(0.25 * (0.7125 - 0.5) / 0.25)
    # the oracle gives its strong calls to b and c first: 0.5 + min(x, 0.5)
    assert res["curve"]["oracle"][100] == pytest.approx(1.0)
    assert res["curve"]["oracle"][20] == pytest.approx(0.5 + 0.1)
    assert res["auc_random"] == pytest.approx(0.625)


def test_metric_functions_match_routellm_on_a_rising_curve():
    x = np.array([0.0, 0.2, 0.6, 1.0])
    y = np.array([0.60, 0.70, 0.78, 0.80])
    for p in (0.2, 0.5, 0.8):  # RouteLLM: np.interp(target, accuracy, strong_share)
        assert cpt(x, y, 0.6, 0.8, p) == pytest.approx(np.interp(0.6 + p * 0.2, y, x))
    # RouteLLM: (AUC - weak AUC) / (strong AUC - weak AUC) over the same x
    auc = np.trapezoid(y, x)
    assert apgr(x, y, 0.6, 0.8) == pytest.approx((auc - 0.6) / (0.8 - 0.6))
    assert cpt(x, y, 0.6, 0.8, 1.01) is None  # never reached


def test_quantile_thresholds_as_routellm():
    score = np.array([GAIN[t] for t in TEXTS])
    t, x, y = ranking_points(score, WEAK, STRONG, num_results=2)
    # edges -0.2, 0.2, 0.5: >= -0.2 all strong, >= 0.2 b and c, > 0.5 none
    assert x.tolist() == [0.0, 0.5, 1.0]
    assert y.tolist() == [0.5, 1.0, 0.75]
    assert t.tolist() == pytest.approx([0.5, 0.2, -0.2])
    assert apgr(x, y, 0.5, 0.75) == pytest.approx((0.5 * 0.75 + 0.5 * 0.875 - 0.5) / 0.25)


def test_thresholds_reach_no_and_all_strong_calls():
    # the gain rule's threshold sweep goes below 0: prompt d (predicted gain -0.2) is reached
    res = evaluate_router(_router(), TEXTS, np.column_stack([WEAK, STRONG]))
    assert (res["share_min"], res["share_max"]) == (0.0, 1.0)
    r = _router()
    costs = r.costs_for(n=4)
    q = r.quality(TEXTS)
    for share in (0.0, 0.25, 0.5, 1.0):
        t = threshold_for_share(r, TEXTS, share)
        assert np.mean(r.choose(q, costs, threshold=t) == 1) == share
    assert threshold_for_share(r, TEXTS, 1.0) < -0.2
    # the threshold rule is ranked by the weak model's predicted failure: also 0..100%
    res_t = evaluate_router(_router("threshold"), TEXTS, np.column_stack([WEAK, STRONG]))
    assert (res_t["share_min"], res_t["share_max"]) == (0.0, 1.0)
    assert res_t["points"]["quality"] == res["points"]["quality"]  # same order (q_w = 0.5 - g/2)


def _write_graded(folder: Path, n: int = 30) -> None:
    """Two subjects; MT-Bench-like judge scores 1..10 per model."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for subject, weak_score in (("cooking", 9), ("proofs", 2)):
        rows = ["prompt,weak,strong"]
        for i in range(n):
            word = "recipe soup" if subject == "cooking" else "prove lemma theorem"
            w = int(np.clip(weak_score + rng.integers(-1, 2), 1, 10))
            rows.append(
                f'"{word} {subject} number {i} {rng.integers(1000)}",{w},{min(10, 9 + i % 2)}'
            )
        (folder / f"{subject}.csv").write_text("\n".join(rows) + "\n")


def test_graded_labels_are_scaled_and_learned(tmp_path):
    _write_graded(tmp_path / "g")
    with pytest.raises(ConfigError, match="label-range"):
        load_labelled_csvs(tmp_path / "g")
    d = load_labelled_csvs(tmp_path / "g", label_range=(1, 10))
    assert d.labels.min() >= 0 and d.labels.max() <= 1 and not np.isin(d.labels, (0, 1)).all()
    sc = TfidfScorer(shape_features=False).fit(d.texts, d.labels, d.models)
    q = sc.predict_quality(["prove lemma theorem proofs", "recipe soup cooking"])
    assert q[0, 1] - q[0, 0] > q[1, 1] - q[1, 0] + 0.2  # the larger gain on proofs
    assert 0.0 < q.min() and q.max() < 1.0
    res = evaluate_router(Router(d.models, [1, 10], sc, objective="gain"), list(d.texts), d.labels)
    assert res["weak_quality"] == pytest.approx(d.labels[:, 0].mean())
    # graded oracle: the largest positive score gains first, capped at every positive gain
    diff = np.clip(d.labels[:, 1] - d.labels[:, 0], 0, None)
    assert res["curve"]["oracle"][-1] == pytest.approx(d.labels[:, 0].mean() + diff.mean())
    assert res["apgr"] > 0.7 and res["above_random_fraction"] > 0.9
    assert oracle_curve(d.labels[:, 0], d.labels[:, 1], np.array([0.0]))[0] == pytest.approx(
        d.labels[:, 0].mean()
    )


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_of_trained_router_files_per_seed(tmp_path, capsys):
    _write_graded(tmp_path / "g", n=40)
    data = str(tmp_path / "g")
    for s in (0, 1):
        code, out, err = _cli(
            [
                "route",
                "train",
                "--data",
                data,
                "--label-range",
                "1:10",
                "--split",
                "random",
                "--seed",
                str(s),
                "--output",
                str(tmp_path / f"r-{s}.pkl"),
            ],
            capsys,
        )
        assert code == 0, err
        assert "on 56 prompts" in out  # the training side only (30% of 80 held out)
    code, out, err = _cli(
        [
            "route",
            "eval",
            "--router",
            str(tmp_path / "r-{seed}.pkl"),
            "--data",
            data,
            "--label-range",
            "1:10",
            "--split",
            "random",
            "--seeds",
            "2",
            "--format",
            "json",
        ],
        capsys,
    )
    assert code == 0, err
    res = json.loads(out)
    assert [r["seed"] for r in res["per_seed"]] == [0, 1]
    assert all(r["n"] == 24 and r["router"].endswith(f"r-{r['seed']}.pkl") for r in res["per_seed"])
    assert all((r["share_min"], r["share_max"]) == (0.0, 1.0) for r in res["per_seed"])
    assert res["apgr"] == pytest.approx(np.mean([r["apgr"] for r in res["per_seed"]]))
    assert res["above_random_fraction_min"] > 0.8 and res["cpt95_max"] < 0.95
    # the whole data set with one router file; the table names CPT and the x axis
    code, out, err = _cli(
        [
            "route",
            "eval",
            "--router",
            str(tmp_path / "r-0.pkl"),
            "--data",
            data,
            "--label-range",
            "1:10",
        ],
        capsys,
    )
    assert code == 0, err
    assert "80 held-out" in out and "CPT(95%)" in out and "strong-call share" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--router", "{tmp}/missing.pkl"], "router file not found"),
        (["--router", "{tmp}/r-0.pkl", "--seeds", "2", "--split", "random"], "{seed}"),
        (["--router", "{tmp}/r-0.pkl", "--cost", "weak=1"], "--cost"),
        (["--split", "none"], "--router"),
        (["--label-range", "10:1"], "label range"),
        (["--num-results", "0"], "--num-results"),
    ],
)
def test_eval_rejects_bad_input_in_one_line(tmp_path, capsys, extra, message):
    _write_graded(tmp_path / "g", n=12)
    _cli(
        [
            "route",
            "train",
            "--data",
            str(tmp_path / "g"),
            "--label-range",
            "1:10",
            "--output",
            str(tmp_path / "r-0.pkl"),
        ],
        capsys,
    )
    args = ["route", "eval", "--data", str(tmp_path / "g")]
    if "--label-range" not in extra:
        args += ["--label-range", "1:10"]
    code, _, err = _cli(args + [e.replace("{tmp}", str(tmp_path)) for e in extra], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
