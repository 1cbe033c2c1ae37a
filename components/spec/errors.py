"""Spec problems: each names the YAML path that is wrong and what is allowed there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    path: str  # dotted YAML path, e.g. "noise.p_uniform"; "" for the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<spec>'}: {self.message}"


class SpecError(Exception):
    """One or more problems with a spec; the CLI prints them all and exits with status 2."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"invalid spec {self.source}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _yaml_path(raw: Any, loc: tuple[Any, ...]) -> list[str]:
    """Turn a pydantic error location into a YAML path, dropping discriminator tags that
    pydantic inserts for tagged unions (``noise.gidd.p_uniform`` -> ``noise.p_uniform``)."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(node, dict) and item not in node and node.get("kind") == item:
            continue
        if isinstance(item, str) and item.startswith("function-"):
            continue
        parts.append(str(item))
        if isinstance(node, dict):
            node = node.get(item)
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            node = node[item]
        else:
            node = None
    return parts


def _allowed_fields(model: type[BaseModel], raw: Any, parents: list[str]) -> list[str] | None:
    """Field names allowed at ``parents`` (for "unknown field" messages), if resolvable."""
    from components.spec.schema import model_at  # local: schema imports the full spec model

    target = model_at(model, raw, parents)
    return sorted(target.model_fields) if target is not None else None


def problems_from_validation(err: ValidationError, raw: Any, model: type[BaseModel]) -> list[Problem]:
    """Readable problems for every error pydantic found, with allowed values where known."""
    problems: list[Problem] = []
    for e in err.errors():
        parts = _yaml_path(raw, e["loc"])
        path = ".".join(parts)
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, raw, parts[:-1])
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            message = f"unknown field {parts[-1]!r}{hint}"
        elif kind == "union_tag_invalid":
            expected = e["ctx"]["expected_tags"].replace("'", "")
            message = f"unknown kind {e['ctx']['tag']!r}; allowed: {expected}"
            path = f"{path}.kind" if path else "kind"
        elif kind == "union_tag_not_found":
            message = "missing 'kind'"
        elif kind == "value_error":
            message = str(e["ctx"]["error"])
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = e["msg"]
            if "input" in e and not isinstance(e["input"], (dict, list)):
                message += f" (got {e['input']!r})"
        problems.append(Problem(path, message))
    return problems
