"""Leaderboards: MLflow runs -> polars frame -> terminal / markdown / csv / json / html / plot.

Columns: run name, status, the params that differ between the listed runs (the swept ones for a
sweep), the ranking metric, a few key metrics (validation ELBO and PPL, final training loss,
tokens/s) and the duration; sorted by the ranking metric, runs without it last.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from mlflow.entities import Run  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines.errors import UsageError  # noqa: E402
from pipelines.tracking import TAG_KIND  # noqa: E402

Format = Literal["table", "md", "csv", "json", "html"]
KEY_METRICS = ("eval/elbo", "eval/ppl", "train/loss", "train/tokens_per_s")
IGNORED_PARAM_PREFIXES = ("sweep.", "tracking.", "name")
TABLE_PARAMS = 6  # the terminal table shows at most this many varying params; other formats show all


class LeaderboardError(UsageError):
    """Unknown experiment or sweep run (CLI exit 2)."""


def _sweep_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise LeaderboardError(f"no run with id {run_id!r} in the tracking store") from None


def fetch_runs(client: MlflowClient, experiment: str, sweep_run_id: str | None = None) -> list[Run]:
    """Training runs of an experiment (sweep parents excluded), or the trials of one sweep."""
    if sweep_run_id is not None:
        parent = _sweep_run(client, sweep_run_id)
        return client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{sweep_run_id}'"
        )
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise LeaderboardError(f"no experiment named {experiment!r}; experiments: {names}")
    runs = client.search_runs([found.experiment_id])
    return [r for r in runs if r.data.tags.get(TAG_KIND) != "sweep"]


def newest_sweep(client: MlflowClient, experiment: str) -> str | None:
    """The run id of the experiment's most recently started sweep (parent run), if any."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    parents = client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1
    )
    return parents[0].info.run_id if parents else None


def default_ranking(client: MlflowClient, sweep_run_id: str | None) -> tuple[str, str]:
    """(metric, mode): the sweep's own objective for a sweep, else validation ELBO (min)."""
    if sweep_run_id is not None:
        params = _sweep_run(client, sweep_run_id).data.params
        if "sweep.metric" in params:
            return params["sweep.metric"], params.get("sweep.mode", "max")
    return "eval/elbo", "min"


def check_metric(runs: list[Run], metric: str, flag: str = "--metric") -> None:
    """Raise LeaderboardError listing the logged metric names unless some run logged ``metric``."""
    names = sorted({k for r in runs for k in r.data.metrics})
    if runs and metric not in names:
        shown = ", ".join(n for n in names if not n.startswith("best/"))
        raise LeaderboardError(f"{flag} {metric!r}: no listed run logged it; logged metrics: {shown}")


def group_seeds(frame: pl.DataFrame, metric: str, mode: str, best_seed: bool = False) -> pl.DataFrame:
    """Runs that differ only in ``train.seed`` -> one row per configuration: the mean of
    ``metric`` and of the key metrics, ``metric`` std (sample, n - 1) and n (runs that logged
    it); ``best_seed`` adds the best run's seed, value and name. Frames without varying seeds
    are returned unchanged."""
    if frame.is_empty() or "train.seed" not in frame.columns:
        return frame
    keys = [c for c, t in frame.schema.items() if t == pl.Utf8 and c not in ("run", "status", "run_id", "train.seed")]
    means = [m for m in (*KEY_METRICS, "duration_s") if m in frame.columns and m != metric]
    ordered = frame.sort(metric, descending=mode == "max", nulls_last=True)
    # A trial's run name without its number and seed ("trial 3 wd=0.1 seed=1" -> "wd=0.1").
    label = pl.col("run").str.replace(r"^trial \d+ ?", "").str.replace(r" ?seed=\d+$", "")
    aggs = [
        pl.col("status").unique().sort().str.join("/").alias("status"),
        pl.col(metric).mean().alias(metric),
        pl.col(metric).std().alias(f"{metric} std"),
        pl.col(metric).count().cast(pl.Int64).alias("n"),
        *[pl.col(m).mean() for m in means],
    ]
    if best_seed:
        aggs += [pl.col("train.seed").first().alias("best_seed"), pl.col(metric).first().alias(f"best {metric}"), pl.col("run").first().alias("best_run")]
    grouped = ordered.with_columns(label.alias("config")).group_by(["config", *keys], maintain_order=True).agg(aggs)
    return grouped.sort(metric, descending=mode == "max", nulls_last=True)


def _status(run: Run) -> str:
    if run.data.tags.get("difflab.stopped_early") == "true":
        return "STOPPED"
    return run.info.status


def build_frame(runs: list[Run], metric: str, mode: str) -> pl.DataFrame:
    """One row per run; ``metric`` first among metric columns, sorted best first."""
    params = [{k: v for k, v in r.data.params.items() if not k.startswith(IGNORED_PARAM_PREFIXES)} for r in runs]
    keys = sorted({k for p in params for k in p})
    varying = [k for k in keys if len({p.get(k) for p in params}) > 1]
    rows = []
    for run, p in zip(runs, params):
        duration = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None
        row: dict[str, object] = {
            "run": run.info.run_name or run.info.run_id,
            "status": _status(run),
            **{k: p.get(k) for k in varying},
            metric: run.data.metrics.get(metric),
            **{m: run.data.metrics.get(m) for m in KEY_METRICS if m != metric},
            "duration_s": duration,
            "run_id": run.info.run_id,
        }
        rows.append(row)
    schema = {k: pl.Utf8 for k in ("run", "status", *varying, "run_id")}
    schema |= {m: pl.Float64 for m in (metric, *KEY_METRICS, "duration_s")}
    frame = pl.DataFrame(rows, schema={k: schema[k] for k in (rows[0] if rows else schema)})
    if frame.is_empty():
        return frame
    return frame.sort(metric, descending=mode == "max", nulls_last=True)


def render(frame: pl.DataFrame, fmt: Format, title: str) -> str:
    """The frame as text in the requested format."""
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        return frame.write_json()
    shown = frame.with_columns(pl.col(pl.Float64).round_sig_figs(5))
    if fmt == "md":
        with pl.Config(
            tbl_formatting="MARKDOWN",
            tbl_hide_column_data_types=True,
            tbl_hide_dataframe_shape=True,
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=200,
            tbl_width_chars=10_000,
        ):
            return f"### {title}\n\n{shown}\n"
    if fmt == "html":
        return shown.to_pandas().to_html(index=False, na_rep="", border=0)
    params = [c for c, t in shown.schema.items() if t == pl.Utf8 and c not in ("run", "status", "run_id")]
    if len(params) > TABLE_PARAMS:  # keep those with the most distinct values
        kept = sorted(params, key=lambda c: -shown[c].n_unique())[:TABLE_PARAMS]
        shown = shown.drop([c for c in params if c not in kept])
        title += f" ({len(params) - TABLE_PARAMS} more varying params: --format csv or md)"
    table = Table(title=title, show_lines=False)
    for column in shown.columns:
        table.add_column(column, overflow="fold")
    for row in shown.iter_rows():
        table.add_row(*("" if v is None else escape(str(v)) for v in row))  # run names hold "[...]"
    buffer = io.StringIO()
    Console(file=buffer, width=max(120, 16 * len(shown.columns)), force_terminal=False).print(table)
    return buffer.getvalue()


COMPARABLE = ("eval/elbo", "eval/ppl")  # the true NELBO bound: comparable across losses and weightings
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_metrics(metric: str) -> list[str]:
    """Panels of a plot: the ranking metric, then validation ELBO unless it is the same kind of
    number. Training losses are left out: differently weighted losses are not comparable."""
    return [metric] if metric in COMPARABLE else [metric, COMPARABLE[0]]


def plot(client: MlflowClient, runs: list[tuple[str, str]], metric: str, path: Path, top: int = 8) -> Path:
    """Curves over steps of the comparable metrics for the first ``top`` (name, run id) pairs;
    each run has its own colour, line style and marker (coinciding curves stay visible), and
    the legend sits outside the axes."""
    keys = plot_metrics(metric)
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for i, (name, run_id) in enumerate(runs[:top]):
        style = {"color": colours[i % len(colours)], "linestyle": STYLES[i % len(STYLES)], "marker": MARKERS[i % len(MARKERS)]}
        for ax, key in zip(axes[0], keys):
            history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
            if history:
                ax.plot([m.step for m in history], [m.value for m in history], label=name, markersize=5, alpha=0.85, **style)
    for ax, key in zip(axes[0], keys):
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
