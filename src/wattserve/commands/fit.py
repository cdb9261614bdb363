"""``wattserve fit``: energy/runtime models in (input, output) tokens; ``wattserve fit show``."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

from wattserve.commands.lists import names


class DefaultGroup(TyperGroup):
    """A group whose first argument may name the default command's input (``fit DATA``)."""

    default_cmd = "run"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_cmd, *args]
        return super().parse_args(ctx, args)


def fits_table(fits, title: str = "fits", params: bool = False):
    from rich.table import Table

    from wattserve.fit.forms import get_form

    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    t = Table(title=title)
    for col in (
        "model",
        "device",
        "quantity",
        "form",
        "loss",
        "CV R²",
        "CV MAPE",
        "R²",
        "R² unc.",
        "rows",
        "input",
        "output",
    ):
        t.add_column(
            col,
            justify="right"
            if col not in ("model", "device", "quantity", "form", "loss")
            else "left",
        )
    if params:
        t.add_column("coefficients")
    for f in fits:
        row = [
            f.model,
            f.device,
            f.quantity,
            f.form,
            f.loss,
            num(f.cv_r2, ".3f"),
            "-" if f.cv_mape is None else f"{100 * f.cv_mape:.1f}%",
            num(f.r2, ".3f"),
            num(f.r2_uncentered, ".4f"),
            str(f.n_rows),
            f"{f.input_range[0]}..{f.input_range[1]}",
            f"{f.output_range[0]}..{f.output_range[1]}",
        ]
        if params:
            units = get_form(f.form).units(f.units or "?")
            row.append(
                "\n".join(
                    f"{p}={c:.4g} {u}"
                    for p, c, u in zip(f.params, f.coefficients, units, strict=False)
                )
            )
        t.add_row(*row)
    return t


def single_shape_groups(groups) -> list[str]:
    """``model@device`` of each group whose rows all share one (input, output) shape."""
    out = []
    for g in groups:
        shapes = set(zip(g.input_tokens.tolist(), g.output_tokens.tolist(), strict=True))
        if len(shapes) == 1:
            out.append(f"{g.model}@{g.device}")
    return out


def single_shape_warning(names: list[str]) -> str:
    """One line: cross-validation over one request shape cannot judge the others."""
    return (
        f"warning: {', '.join(names)}: every row has one (input, output) shape; CV over it "
        "(row folds) says nothing about how the fit predicts other shapes"
    )


def register(app: typer.Typer) -> None:
    fit_app = typer.Typer(
        cls=DefaultGroup,
        no_args_is_help=True,
        help="Fit energy and runtime models in (input, output) tokens: `wattserve fit DATA...` "
        "(same as `fit run`), `wattserve fit show FITS.json`.",
    )
    app.add_typer(fit_app, name="fit")

    @fit_app.command("run")
    def fit_run(
        data: list[Path] = typer.Argument(
            ..., help="CSV/Parquet/JSONL measurement files or bench run directories."
        ),
        output: Path = typer.Option(
            Path("fits.json"), "--output", "-o", help="Where to write the ModelFit JSON."
        ),
        forms: str = typer.Option(
            "all",
            "--form",
            help="Comma-separated forms (linear-interaction, physical, context, "
            "context-quadratic) or 'all'.",
        ),
        select: str = typer.Option(
            "best",
            "--select",
            help="'best' keeps one (form, loss) per group and quantity: one meeting both CV "
            "R² >= 0.97 and CV MAPE <= 15% first, then the lowest CV MAPE; 'all' keeps every fit.",
        ),
        loss: str = typer.Option(
            "all",
            "--loss",
            help="Comma-separated losses or 'all': squared, relative (squared relative error), "
            "log (squared log error), huber-relative (Huber on relative error).",
        ),
        quantities: str = typer.Option(
            "energy_j,runtime_s", "--quantity", help="Comma-separated: energy_j, runtime_s."
        ),
        folds: int = typer.Option(
            5,
            "--folds",
            min=2,
            help="k for k-fold CV (folds hold out whole (input, output) shapes).",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for the fold split."),
        min_rows: int = typer.Option(
            20, "--min-rows", min=1, help="Skip (model, device) groups with fewer rows."
        ),
        keep_cold: bool = typer.Option(
            False, "--keep-cold", help="Keep iteration-0 (cold start) rows."
        ),
        model_col: str | None = typer.Option(
            None, "--model-col", help="Column with the model name."
        ),
        device_col: str | None = typer.Option(
            None, "--device-col", help="Column with the device/system (default device or system)."
        ),
        input_col: str | None = typer.Option(None, "--input-col", help="Column with input tokens."),
        output_col: str | None = typer.Option(
            None, "--output-col", help="Column with output tokens."
        ),
        runtime_col: str | None = typer.Option(
            None, "--runtime-col", help="Column with runtime in seconds."
        ),
        energy_col: str | None = typer.Option(
            None,
            "--energy-col",
            help="Column with energy in joules (default total_energy_j, then energy_j).",
        ),
        plot: Path | None = typer.Option(
            None, "--plot", help="Write a predicted-vs-measured PNG here."
        ),
        params: bool = typer.Option(False, "--params", help="Show coefficients with their units."),
        as_json: bool = typer.Option(
            False, "--json", help="Print the fits as JSON instead of a table (notes on stderr)."
        ),
    ) -> None:
        """Fit every form to every (model, device) group, with k-fold cross-validation."""
        from rich.console import Console
        from rich.progress import Progress

        from wattserve.console import print_json, stdout_console
        from wattserve.errors import ConfigError
        from wattserve.fit import FORMS, fit_groups, save_fits
        from wattserve.fit.io import Columns, load_groups

        console = Console(stderr=True) if as_json else stdout_console()
        form_list = list(FORMS) if forms == "all" else names([forms])
        qs = names([quantities])
        for q in qs:
            if q not in ("energy_j", "runtime_s"):
                raise ConfigError(f"unknown quantity {q!r}; use energy_j and/or runtime_s")
        cols = Columns(model_col, device_col, input_col, output_col, runtime_col, energy_col)
        groups, notes = load_groups(
            data, cols, quantities=tuple(qs), keep_cold=keep_cold, min_rows=min_rows
        )
        for note in notes:
            console.print(f"[dim]{note}[/dim]")
        single = single_shape_groups(groups)
        if single:
            console.print(f"[yellow]{single_shape_warning(single)}[/yellow]")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("fitting", total=len(groups) * len(qs))
            fits = fit_groups(
                groups,
                forms=form_list,
                quantities=qs,
                loss=loss,
                select=select,
                k=folds,
                seed=seed,
                progress=lambda: progress.advance(task),
            )
        save_fits(fits, output)
        if as_json:
            print_json({"output": output, "fits": [f.to_dict() for f in fits]})
        else:
            console.print(fits_table(fits, f"{len(fits)} fits -> {output}", params))
        if select == "best":
            from wattserve.fit.fitting import threshold_misses

            for line in threshold_misses(fits):
                console.print(f"[yellow]{line}[/yellow]")
        if plot is not None:
            from wattserve.fit.plot import predicted_vs_measured

            predicted_vs_measured(fits, groups, plot)
            console.print(f"plot -> {plot}")

    @fit_app.command("show")
    def fit_show(
        fits_path: Path = typer.Argument(..., help="A fits JSON written by `wattserve fit`."),
        params: bool = typer.Option(False, "--params", help="Show coefficients with their units."),
        as_json: bool = typer.Option(False, "--json", help="Print the fits as JSON."),
    ) -> None:
        """Print the fits in a table (CV R², CV MAPE, in-sample R², ranges)."""
        from wattserve.console import print_json, stdout_console
        from wattserve.fit import load_fits

        fits = load_fits(fits_path)
        if as_json:
            print_json({"path": fits_path, "fits": [f.to_dict() for f in fits]})
            return
        stdout_console().print(fits_table(fits, str(fits_path), params))
