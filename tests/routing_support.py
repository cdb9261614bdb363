"""Small routing fixtures: labelled prompts where a weak model answers the easy half, a
router trained on them by ``wattserve route train``, and energy fits for both models."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wattserve.cli import main
from wattserve.fit import save_fits
from wattserve.types import ModelFit

MODELS = ("weak", "strong")


def easy_prompt(i: int) -> str:
    return f"add the numbers {i} and {i + 1} please"


def hard_prompt(i: int) -> str:
    return f"prove lemma {i} about compact riemannian manifolds with boundary"


def write_routing_csv(path: Path, n: int = 40) -> Path:
    """``n`` easy prompts both models get right, ``n`` hard ones only the strong one does."""
    rows = [{"prompt": easy_prompt(i), "weak": 1, "strong": 1} for i in range(n)]
    rows += [{"prompt": hard_prompt(i), "weak": 0, "strong": 1} for i in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_router(tmp: Path, weak_cost: float = 1.0, strong_cost: float = 10.0) -> Path:
    """A tfidf router (gain rule) trained with these costs, saved by the CLI."""
    data = write_routing_csv(tmp / "labels.csv")
    out = tmp / "router.pkl"
    try:
        main(
            [
                "route",
                "train",
                "--data",
                str(data),
                "--output",
                str(out),
                "--cost",
                f"weak={weak_cost}",
                "--cost",
                f"strong={strong_cost}",
            ]
        )
    except SystemExit as exc:
        assert not exc.code, f"route train failed with {exc.code}"
    assert out.is_file()
    return out


def energy_fit(model: str, fixed_j: float, per_out_j: float, per_in_j: float = 0.0) -> ModelFit:
    """joules = fixed + per_in * input + per_out * output (the ``physical`` form)."""
    return ModelFit(
        model=model,
        device="cpu",
        quantity="energy_j",
        form="physical",
        params=("c0_fixed", "c1_prefill", "c2_decode", "c3_in_out"),
        coefficients=(fixed_j, per_in_j, per_out_j, 0.0),
        n_rows=0,
    )


def write_fits(path: Path, fits: list[ModelFit]) -> Path:
    save_fits(fits, path)
    return path
