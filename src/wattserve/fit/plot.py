"""Predicted vs measured: one log-log panel per (form, quantity), a colour per group.

matplotlib, headless (Agg backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def predicted_vs_measured(fits, groups, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wattserve.fit import predict
    from wattserve.fit.fitting import mape

    by_key = {(g.model, g.device): g for g in groups}
    quantities = sorted({f.quantity for f in fits})
    forms = list(dict.fromkeys(f.form for f in fits))
    keys = list(dict.fromkeys((f.model, f.device) for f in fits))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(keys), 2)))
    fig, axes = plt.subplots(
        len(forms),
        len(quantities),
        figsize=(5.5 * len(quantities), 4.5 * len(forms)),
        squeeze=False,
    )
    for r, form in enumerate(forms):
        for c, q in enumerate(quantities):
            ax = axes[r][c]
            lo, hi, errs = np.inf, 0.0, []
            for f in (f for f in fits if f.quantity == q and f.form == form):
                g = by_key.get((f.model, f.device))
                if g is None:
                    continue
                y = g.energy_j if q == "energy_j" else g.runtime_s
                yhat = predict(f, g.input_tokens, g.output_tokens, warn=False)
                errs.append(mape(y, yhat))
                ok = yhat > 0
                ax.scatter(
                    y[ok],
                    yhat[ok],
                    s=5,
                    alpha=0.6,
                    color=colours[keys.index((f.model, f.device))],
                    label=f"{f.model} @ {f.device}",
                )
                lo, hi = min(lo, y.min()), max(hi, y.max())
            if hi > 0:
                ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"measured {q}")
            ax.set_ylabel(f"predicted {q}")
            med = f", median in-sample MAPE {100 * np.median(errs):.0f}%" if errs else ""
            ax.set_title(f"{form}{med}", fontsize=9)
    if len(keys) <= 16:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="lower center", ncol=min(4, len(keys)), fontsize=6, markerscale=2
        )
        fig.tight_layout(rect=(0, 0.04 + 0.012 * ((len(keys) + 3) // 4), 1, 1))
    else:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
