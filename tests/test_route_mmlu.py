"""The learned router on RouteLLM's MMLU labels (../shared/data/routing/mmlu): above random
routing on the random split, and the train / eval / decide commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wattserve.cli import main
from wattserve.route import (
    PriorScorer,
    Router,
    TfidfScorer,
    evaluate_router,
    load_labelled_csvs,
    random_split,
)
from wattserve.route.data import group_split


@pytest.fixture(scope="module")
def mmlu():
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "routing" / "mmlu"
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}")
    return load_labelled_csvs(path)


def test_data_loads_with_subjects(mmlu):
    assert len(mmlu) > 5000 and mmlu.models == (
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "gpt-4-1106-preview",
    )
    assert len(set(mmlu.groups)) == 29 and set(np.unique(mmlu.labels)) <= {0.0, 1.0}
    train, test = group_split(mmlu, 0.3, seed=0)
    assert not set(train.groups) & set(test.groups)
    assert 0.25 < len(test) / len(mmlu) < 0.45


def test_learned_router_beats_random_routing_on_a_random_split(mmlu):
    train, test = random_split(mmlu, 0.3, seed=0)
    scorer = TfidfScorer().fit(train.texts, train.labels, train.models)
    router = Router(mmlu.models, [1.0, 10.0], scorer, objective="gain")
    res = evaluate_router(router, list(test.texts), test.labels)
    assert res["above_random_fraction"] >= 0.95
    assert res["cpt95"] < res["cpt95_random"]  # fewer strong calls to recover 95% of the gap
    assert res["auc"] > res["auc_random"] and res["apgr"] > 0.55
    assert res["auc_oracle"] > res["auc"]
    # the no-information scorer is random routing: it never beats the line
    prior = Router(
        mmlu.models, [1.0, 10.0], PriorScorer().fit(train.texts, train.labels, train.models)
    )
    flat = evaluate_router(prior, list(test.texts), test.labels)
    assert flat["above_random_fraction"] == 0.0 and flat["apgr"] == pytest.approx(0.5)


def test_train_decide_and_eval_commands(mmlu, tmp_path, capsys):
    from tests.conftest import SHARED_DATA

    files = [
        SHARED_DATA / "routing" / "mmlu" / f"mmlu_{s}.csv"
        for s in ("marketing", "college_mathematics")
    ]
    sub = tmp_path / "two"
    sub.mkdir()
    for f in files:
        (sub / f.name).write_text(f.read_text())
    out = tmp_path / "r.pkl"

    def run(args):
        try:
            main(args)
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        return capsys.readouterr().out

    text = run(
        [
            "route",
            "train",
            "--data",
            str(sub),
            "--output",
            str(out),
            "--target-share",
            "0.5",
            "--objective",
            "threshold",
            "--cost",
            "gpt-4-1106-preview=30",
        ]
    )
    assert "saved" in text
    r = Router.load(out)
    assert r.cost_specs["gpt-4-1106-preview"] == 30.0
    easy = (
        "The study of how consumers buy products is called\n"
        "A. marketing research\nB. chemistry\nAnswer:"
    )
    hard = (
        "Let f(x) = x^3 - 3x + 1. How many real roots does f have in [0, 2]?\n"
        "A. 0\nB. 1\nC. 2\nD. 3"
    )
    d_easy = json.loads(run(["route", "decide", "--router", str(out), "--prompt", easy]))
    d_hard = json.loads(run(["route", "decide", "--router", str(out), "--prompt", hard]))
    weak = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert d_easy["scores"][weak] > d_hard["scores"][weak] + 0.2  # marketing vs college maths
    assert d_easy["model"] == weak and "cheapest" in d_easy["reason"]
    assert d_easy["costs"] == {weak: 1.0, "gpt-4-1106-preview": 30.0}
    top = json.loads(
        run(["route", "decide", "--router", str(out), "--prompt", easy, "--threshold", "1.0"])
    )
    assert "no model reaches" in top["reason"]
    res = json.loads(
        run(
            [
                "route",
                "eval",
                "--data",
                str(sub),
                "--split",
                "random",
                "--format",
                "json",
                "--scorer",
                "prior",
            ]
        )
    )
    assert res["apgr"] == pytest.approx(0.5) and res["n"] >= 90
    code = None
    try:
        main(["route", "eval", "--data", str(tmp_path / "none")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "not found" in capsys.readouterr().err


def test_eval_over_several_seeds_reports_the_mean(tmp_path, capsys):
    from tests.conftest import SHARED_DATA

    f = SHARED_DATA / "routing" / "mmlu" / "mmlu_anatomy.csv"
    if not f.is_file():
        pytest.skip("reference data not found")
    try:
        main(
            [
                "route",
                "eval",
                "--data",
                str(f),
                "--scorer",
                "prior",
                "--seeds",
                "3",
                "--format",
                "json",
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None)
    res = json.loads(capsys.readouterr().out)
    assert res["seeds"] == [0, 1, 2] and len(res["per_seed"]) == 3
    assert res["apgr"] == pytest.approx(np.mean([r["apgr"] for r in res["per_seed"]]))
    assert res["above_random_fraction_min"] == 0.0


def test_trained_router_file_on_unseen_subjects(mmlu, tmp_path, capsys):
    """`route train --split subject` then `route eval --router FILE --split subject`: the
    held-out subjects only, thresholds over 0..100% strong calls, RouteLLM's metrics."""
    from tests.conftest import SHARED_DATA

    data = str(SHARED_DATA / "routing" / "mmlu")
    out = tmp_path / "r-0.pkl"
    common = ["--data", data, "--split", "subject", "--seed", "0"]
    try:
        main(["route", "train", *common, "--C", "0.3", "--output", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    capsys.readouterr()
    try:
        main(["route", "eval", "--router", str(out), *common, "--format", "json"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    res = json.loads(capsys.readouterr().out)
    _, test = group_split(mmlu, 0.3, seed=0)
    assert res["n"] == len(test) and res["test_groups"] == sorted(set(test.groups))
    assert (res["share_min"], res["share_max"]) == (0.0, 1.0)
    assert res["apgr"] > 0.55 and res["above_random_fraction"] >= 0.9
    assert res["cpt50"] < 0.45 and res["cpt95"] < res["cpt95_random"]
