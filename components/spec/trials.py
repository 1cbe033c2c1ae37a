"""Sweep trials as specs: a trial is the base spec with the sweep's values set at their paths
and no ``sweep`` section of its own, so its hash identifies the trial."""

from __future__ import annotations

from typing import Any

from components.spec.errors import Problem, SpecError
from components.spec.loading import ResolvedSpec, set_path, validate
from components.spec.model import Spec


def _has_path(data: dict[str, Any], parts: list[str]) -> bool:
    node: Any = data
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def trial_spec(base: ResolvedSpec, assignment: dict[str, Any], label: str = "<trial>") -> ResolvedSpec:
    """The spec of one trial: ``base`` with each ``path -> value`` of ``assignment`` applied."""
    data = base.to_dict()
    data["sweep"] = None
    for path, value in assignment.items():
        set_path(data, path.split("."), value)
    return validate(data, label, source=base.source)


ELBO_METRICS = ("elbo", "ppl", "bits_per_token", "seconds")  # every evaluation, any task


def eval_metric_names(spec: Spec) -> set[str] | None:
    """The ``eval/*`` names a run of ``spec`` reports, or None when its task does not list its
    own metrics (then any ``eval/`` name is accepted)."""
    names = getattr(spec.task, "metric_names", None)
    if names is None:
        return None
    task = names(list(spec.eval_samplers()), spec.eval.data is not None) if spec.eval.num_samples else []
    return {f"eval/{n}" for n in (*ELBO_METRICS, *task)}


def _metric_problem(metric: str, known: set[str] | None) -> Problem | None:
    if not metric.startswith(("train/", "eval/")):
        return Problem("sweep.metric", f"{metric!r} is never reported; metrics are train/* or eval/*, e.g. eval/elbo")
    if metric.startswith("eval/") and known is not None and metric not in known:
        return Problem("sweep.metric", f"{metric!r} is never reported by this spec; its trials report {', '.join(sorted(known))}")
    return None


def sweep_problems(resolved: ResolvedSpec) -> list[Problem]:
    """Problems with the sweep section: paths that do not exist in the resolved spec, values
    (every grid/choice value, both ends of a range) that would make a trial's spec invalid, and
    a metric that no trial reports (eval/* names from the task, any train/* name)."""
    sweep = resolved.spec.sweep
    if sweep is None:
        return []
    data = resolved.to_dict()
    problems = []
    known = eval_metric_names(resolved.spec)
    for path, dim in sweep.space.items():
        where = f"sweep.space.{path}"
        parts = path.split(".")
        if parts[0] == "sweep" or not _has_path(data, parts):
            problems.append(Problem(where, f"{path!r} is not a field of this spec; sweep paths name existing leaves such as noise.{next(iter(data['noise']))}"))
            continue
        for value in dim.probe_values():
            try:
                trial = trial_spec(resolved, {path: value})
            except SpecError as err:
                reasons = "; ".join(str(p) for p in err.problems)
                problems.append(Problem(where, f"value {value!r} is not allowed: {reasons}"))
                continue
            names = eval_metric_names(trial.spec)
            known = None if known is None or names is None else known | names
    problem = _metric_problem(sweep.metric, known)
    return [*problems, problem] if problem else problems
