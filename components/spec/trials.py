"""Sweep trials as specs: a trial is the base spec with the sweep's values set at their paths
and no ``sweep`` section of its own, so its hash identifies the trial."""

from __future__ import annotations

from typing import Any

from components.spec.errors import Problem, SpecError
from components.spec.loading import ResolvedSpec, set_path, validate


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


def sweep_problems(resolved: ResolvedSpec) -> list[Problem]:
    """Problems with the sweep section: paths that do not exist in the resolved spec, and values
    (every grid/choice value, both ends of a range) that would make a trial's spec invalid."""
    sweep = resolved.spec.sweep
    if sweep is None:
        return []
    data = resolved.to_dict()
    problems = []
    for path, dim in sweep.space.items():
        where = f"sweep.space.{path}"
        parts = path.split(".")
        if parts[0] == "sweep" or not _has_path(data, parts):
            problems.append(Problem(where, f"{path!r} is not a field of this spec; sweep paths name existing leaves such as noise.{next(iter(data['noise']))}"))
            continue
        for value in dim.probe_values():
            try:
                trial_spec(resolved, {path: value})
            except SpecError as err:
                reasons = "; ".join(str(p) for p in err.problems)
                problems.append(Problem(where, f"value {value!r} is not allowed: {reasons}"))
    return problems
