"""``difflab validate|run|sweep|eval|sample|export|leaderboard|runs|show|diff|rm``.

Heavy libraries (torch, Ray, MLflow, datasets) are imported by the commands that use them, after
the arguments are parsed, so ``--help`` and argument errors answer at once.

Every usage problem (bad spec, components that do not fit together, unknown run id, unreachable
tracking store) is printed with what is wrong and what is allowed, and exits with status 2,
without a traceback. A training failure exits with status 1 after marking the run FAILED.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from components.registry import BuildError
from pipelines.errors import RunFailed, UsageError

if TYPE_CHECKING:
    from components.spec import ResolvedSpec

USAGE_ERROR = 2
RUN_FAILED = 1


def _add_spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="YAML spec file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
        help="override a leaf of the spec, e.g. --set noise.p_uniform=0.2 (repeatable)",
    )


def _add_uri_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difflab", description="Discrete diffusion experiments from one YAML spec.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("validate", help="check a spec; print it resolved, with its hash")
    _add_spec_args(p)

    p = commands.add_parser("run", help="train a spec with Ray Train, tracked in MLflow (resumes by spec hash)")
    _add_spec_args(p)
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--fresh", action="store_true", help="discard this spec's checkpoints and start a new run")

    p = commands.add_parser("sweep", help="run the spec's sweep: section with Ray Tune, then print its leaderboard")
    _add_spec_args(p)
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--fresh", action="store_true", help="start the sweep and its trials over (deletes their checkpoints, says which)")
    p.add_argument("--format", choices=["table", "md", "csv", "json", "html"], default="table")
    p.add_argument(
        "--grid", action="append", default=[], metavar="PATH=V1,V2",
        help="sweep PATH over the listed values instead of the spec's space (repeatable), e.g. --grid noise.p_uniform=0,0.1",
    )
    p.add_argument("--seeds", type=int, help="runs of each configuration (sets sweep.seeds)")
    p.add_argument("--metric", help="sweep.metric (needed with --grid when the spec has no sweep: section)")
    p.add_argument("--mode", choices=["max", "min"], help="sweep.mode")
    p.add_argument("--dry-run", action="store_true", help="print the trials (overrides, seeds, resources, concurrency) and exit")
    p.add_argument("--best-seed", action="store_true", help="leaderboard: add each configuration's best seed")
    p.add_argument("--verbose", action="store_true", help="show Ray's and the workers' own output")

    p = commands.add_parser("eval", help="evaluate a run's checkpoint and log the metrics to that run")
    p.add_argument("run_id", metavar="RUN", help="run id, unique id prefix or run name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override eval.* or sampler.* of the run's spec, e.g. --set eval.data=puzzles.csv")
    _add_uri_arg(p)

    p = commands.add_parser("sample", help="generate with a run's checkpoint (or an export); print and log the samples")
    p.add_argument("run_id", nargs="?", metavar="RUN", help="run id, unique id prefix or run name (or give --from)")
    p.add_argument("--from", dest="export", type=Path, metavar="OUT_DIR", help="an export folder (`difflab export`) instead of a run")
    p.add_argument("-n", type=int, default=4, help="number of samples (default 4, at most 100000)")
    p.add_argument("--steps", type=int, help="sampler steps (overrides the spec)")
    p.add_argument("--sampler", help="name of one of the run's eval samplers (default: the first)")
    _add_uri_arg(p)

    p = commands.add_parser("export", help="write a run's weights, tokenizer, spec and model card as a Hugging Face-style folder")
    p.add_argument("run_id", metavar="RUN", help="run id, unique id prefix or run name")
    p.add_argument("--format", choices=["hf"], default="hf", help="folder layout (hf: config.json, safetensors, tokenizer.json)")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="a new or empty folder")
    _add_uri_arg(p)

    p = commands.add_parser("leaderboard", help="compare runs of an experiment or a sweep")
    p.add_argument("experiment", nargs="?", default="difflab", help="MLflow experiment (default: difflab)")
    p.add_argument("--metric", help="ranking metric (default: the sweep's metric, else eval/elbo)")
    p.add_argument("--mode", choices=["max", "min"], help="max or min is best")
    p.add_argument("--sweep", metavar="RUN_ID", help="only the trials of this sweep (parent run id; default: the newest sweep)")
    p.add_argument("--all", dest="all_runs", action="store_true", help="every run of the experiment, not only the newest sweep's trials")
    p.add_argument("--best-seed", action="store_true", help="add each configuration's best seed, its value and run")
    p.add_argument("--format", choices=["table", "md", "csv", "json", "html"], default="table")
    p.add_argument("--output", type=Path, help="write to this file instead of stdout")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot metric curves of the top runs")
    _add_uri_arg(p)

    _add_run_commands(commands)
    return parser


def _add_run_commands(commands: argparse._SubParsersAction) -> None:
    """``runs``, ``show``, ``diff``, ``rm``: RUN is a run id, a unique id prefix or a run name."""
    run_help = "run id, unique id prefix or run name"
    p = commands.add_parser("runs", help="list runs: name, status, key metric, age, spec hash")
    p.add_argument("experiment", nargs="?", help="MLflow experiment (default: every experiment)")
    p.add_argument("--limit", type=int, default=50, help="newest runs shown (default 50)")
    _add_uri_arg(p)

    p = commands.add_parser("show", help="a run's resolved spec, metrics, artifacts and checkpoint")
    p.add_argument("run", metavar="RUN", help=run_help)
    _add_uri_arg(p)

    p = commands.add_parser("diff", help="two runs' resolved-spec differences and metric deltas")
    p.add_argument("run_a", metavar="RUN_A", help=run_help)
    p.add_argument("run_b", metavar="RUN_B", help=run_help)
    _add_uri_arg(p)

    p = commands.add_parser("rm", help="delete runs: the MLflow run and its run folder (asks first)")
    p.add_argument("runs", metavar="RUN", nargs="+", help=run_help)
    p.add_argument("--yes", action="store_true", help="delete without asking")
    _add_uri_arg(p)


def _print_run_summary(client, run_id: str, uri: str) -> None:  # noqa: ANN001 - MlflowClient
    from rich.console import Console
    from rich.table import Table

    run = client.get_run(run_id)
    table = Table(title=f"{run.info.run_name} ({run.info.status})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(run.data.metrics):
        if key.startswith("eval/") or key in ("train/loss", "train/tokens_per_s", "train/peak_memory_gib"):
            table.add_row(key, f"{run.data.metrics[key]:.6g}")
    Console().print(table)
    print(f"MLflow run {run_id} in {uri}")


def _in_range(value: int | None, flag: str, most: int | None = None) -> None:
    if value is not None and (value < 1 or (most is not None and value > most)):
        allowed = f"between 1 and {most}" if most is not None else ">= 1"
        raise UsageError(f"{flag} must be {allowed}, got {value}")


def _existing_folder(path: Path | None, flag: str) -> None:
    """Exit 2 before any work when the folder that ``path`` goes into does not exist (``--plot``
    creates its folder; ``--output`` names a file in an existing one)."""
    if path is not None and not path.resolve().parent.is_dir():
        raise UsageError(f"{flag}: folder {path.resolve().parent} does not exist; create it or name another file")


def _run_id(uri: str, ref: str) -> str:
    """The id of the run ``ref`` names (an id, a unique id prefix or a run name)."""
    from pipelines import runs, tracking

    return runs.find_run(tracking.use(uri), ref, "RUN").info.run_id


def _grid_dimension(item: str) -> tuple[str, dict[str, list]]:
    """``noise.p_uniform=0,0.1`` -> ``("noise.p_uniform", {"grid": [0, 0.1]})`` (values read as YAML)."""
    import yaml

    from components.spec import Problem, SpecError

    path, sep, raw = item.partition("=")
    values = [v.strip() for v in raw.split(",")] if sep else []
    if not path.strip() or not values or any(not v for v in values):
        raise SpecError("command line", [Problem("--grid", f"{item!r}: expected PATH=V1,V2,... e.g. noise.p_uniform=0,0.1")])
    try:
        return path.strip(), {"grid": [yaml.safe_load(v) for v in values]}
    except yaml.YAMLError as err:
        raise SpecError("command line", [Problem("--grid", f"{item!r}: a value is not YAML: {err}")]) from None


def sweep_spec(args: argparse.Namespace) -> ResolvedSpec:
    """The spec of ``difflab sweep``: the file with --set, its sweep section changed by
    --grid (the space), --seeds, --metric and --mode; validated again as a whole."""
    from components.spec import Problem, SpecError, load_spec, validate

    resolved = load_spec(args.spec, args.overrides)
    _in_range(args.seeds, "--seeds")
    changes = args.grid or args.seeds is not None or args.metric or args.mode
    if not changes:
        if resolved.spec.sweep is None:
            raise SpecError(str(args.spec), [Problem("sweep", "this spec has no sweep: section; add one, pass --grid PATH=V1,V2 --metric M --mode max|min, or use `difflab run`")])
        return resolved
    data = resolved.to_dict()
    section = dict(data.get("sweep") or {})
    if not section and not args.grid:
        raise SpecError("command line", [Problem("--grid", "this spec has no sweep: section; --seeds/--metric/--mode need --grid PATH=V1,V2")])
    if args.grid:
        section["space"] = dict(_grid_dimension(item) for item in args.grid)
    missing = [flag for flag, key in (("--metric", "metric"), ("--mode", "mode")) if key not in section and getattr(args, key) is None]
    if missing:
        raise SpecError("command line", [Problem(f, "required: the spec has no sweep: section to take it from") for f in missing])
    for key in ("seeds", "metric", "mode"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    data["sweep"] = section
    return validate(data, f"{args.spec} (with the command line's sweep)", source=resolved.source)


def _command(args: argparse.Namespace) -> int:
    if args.command in ("runs", "show", "diff", "rm"):
        return _run_command(args)
    if args.command in ("validate", "run", "sweep"):  # the spec models import torch
        from components.spec import Problem, SpecError, load_spec

    if args.command == "validate":
        from pipelines.sizes import describe_model

        resolved = load_spec(args.spec, args.overrides)
        print(resolved.to_yaml(), end="")
        print(f"# spec hash: {resolved.hash}")
        print(f"# model: {describe_model(resolved.spec)}")
        return 0

    from pipelines import tracking

    if args.command == "run":
        from pipelines.launch import run

        resolved = load_spec(args.spec, args.overrides)
        tracked = run(resolved, fresh=args.fresh, address=args.address)
        _print_run_summary(tracked.client, tracked.run_id, tracked.uri)
        return 0

    if args.command == "sweep":
        from pipelines import leaderboard
        from pipelines.sweep import dry_run, sweep

        resolved = sweep_spec(args)
        if args.dry_run:
            import os

            print(dry_run(resolved, os.cpu_count() or 1, 0), end="")
            return 0
        result = sweep(resolved, address=args.address, fresh=args.fresh, verbose=args.verbose)
        client = tracking.use(result.uri)
        metric, mode = leaderboard.default_ranking(client, result.parent_run_id)
        frame = leaderboard.build_frame(leaderboard.fetch_runs(client, result.experiment, result.parent_run_id), metric, mode)
        frame = leaderboard.group_seeds(frame, metric, mode, args.best_seed)
        print(leaderboard.render(frame, args.format, f"sweep {resolved.spec.name}: {metric} ({mode})"))
        print(f"{result.trials} trials, {result.errors} failed; parent run {result.parent_run_id} in {result.uri}")
        return 0

    if args.command == "sample":
        from components.spec.sections import MAX_SAMPLES

        if (args.export is None) == (args.run_id is None):
            raise UsageError("sample: give a RUN (id, unique id prefix or run name) or --from OUT_DIR, one of them")
        _in_range(args.n, "-n", MAX_SAMPLES)
        _in_range(args.steps, "--steps")
        if args.export is not None:
            from pipelines.export import sample_export

            texts = sample_export(args.export, args.n, args.steps, args.sampler)
        else:
            from pipelines.evaluate import sample_run

            uri = tracking.resolve_uri(args.uri)
            tracking.check_reachable(uri)
            texts = sample_run(uri, _run_id(uri, args.run_id), args.n, args.steps, args.sampler)
        for i, text in enumerate(texts):
            print(f"--- sample {i}\n{text}")
        return 0

    uri = tracking.resolve_uri(args.uri)
    tracking.check_reachable(uri)

    if args.command == "export":
        from pipelines.export import export_run

        for path in export_run(uri, _run_id(uri, args.run_id), args.out_dir):
            print(f"wrote {path}")
        return 0

    if args.command == "eval":
        from pipelines.evaluate import eval_run

        metrics = eval_run(uri, _run_id(uri, args.run_id), args.overrides)
        for key in sorted(metrics):
            print(f"{key}: {metrics[key]:.6g}")
        return 0

    from pipelines import leaderboard

    _existing_folder(args.output, "--output")
    client = tracking.use(uri)
    sweep_id = args.sweep or (None if args.all_runs else leaderboard.newest_sweep(client, args.experiment))
    metric, mode = leaderboard.default_ranking(client, sweep_id)
    metric, mode = args.metric or metric, args.mode or mode
    runs = leaderboard.fetch_runs(client, args.experiment, sweep_id)
    leaderboard.check_metric(runs, metric)
    frame = leaderboard.build_frame(runs, metric, mode)
    grouped = leaderboard.group_seeds(frame, metric, mode, args.best_seed)
    scope = f"sweep {sweep_id}" if sweep_id else "all runs"
    text = leaderboard.render(grouped, args.format, f"{args.experiment} ({scope}): {metric} ({mode})")
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    if args.plot:
        pairs = list(zip(frame["run"].to_list(), frame["run_id"].to_list())) if not frame.is_empty() else []
        print(f"wrote {leaderboard.plot(client, pairs, metric, args.plot)}")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    """``runs`` / ``show`` / ``diff`` / ``rm``: MLflow only (no torch, no Ray)."""
    from pipelines import runs, tracking

    _in_range(getattr(args, "limit", None), "--limit")
    uri = tracking.resolve_uri(args.uri)
    tracking.check_reachable(uri)
    client = tracking.use(uri)
    if args.command == "runs":
        print(runs.render_list(runs.list_runs(client, args.experiment, args.limit)))
        return 0
    if args.command == "show":
        print(runs.show(client, runs.find_run(client, args.run, "RUN")))
        return 0
    if args.command == "diff":
        print(runs.diff(client, runs.find_run(client, args.run_a, "RUN_A"), runs.find_run(client, args.run_b, "RUN_B")))
        return 0
    return runs.remove(client, [runs.find_run(client, ref, "RUN") for ref in args.runs], yes=args.yes)


def _is_spec_error(err: BaseException) -> bool:
    """Whether ``err`` is a SpecError; its module loads (with torch) only in commands that read a
    spec, so a command that never loaded it cannot have raised one."""
    errors = sys.modules.get("components.spec.errors")
    return errors is not None and isinstance(err, errors.SpecError)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except (BuildError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except RunFailed as err:
        print(f"training failed: {err}", file=sys.stderr)
        return RUN_FAILED
    except Exception as err:
        if not _is_spec_error(err):
            raise
        print(err.render(), file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
