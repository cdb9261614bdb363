"""Predicted vs measured, one panel per quantity, log-log (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def predicted_vs_measured(fits, groups, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wattserve.fit import predict

    by_key = {(g.model, g.device): g for g in groups}
    quantities = sorted({f.quantity for f in fits})
    fig, axes = plt.subplots(1, len(quantities), figsize=(6 * len(quantities), 5), squeeze=False)
    for ax, q in zip(axes[0], quantities):
        lo, hi = np.inf, 0.0
        for f in (f for f in fits if f.quantity == q):
            g = by_key.get((f.model, f.device))
            if g is None:
                continue
            y = g.energy_j if q == "energy_j" else g.runtime_s
            yhat = predict(f, g.input_tokens, g.output_tokens, warn=False)
            ok = yhat > 0
            ax.scatter(y[ok], yhat[ok], s=6, alpha=0.6, label=f"{f.model} @ {f.device} ({f.form})")
            lo, hi = min(lo, y.min()), max(hi, y.max())
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {q}")
        ax.set_ylabel(f"predicted {q}")
        ax.legend(fontsize=5)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
