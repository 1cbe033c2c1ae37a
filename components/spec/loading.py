"""Reading a spec: safe YAML, ``extends:`` merging, ``--set`` overrides, validation, hashing."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.spec.errors import Problem, SpecError, problems_from_validation
from components.spec.model import Spec
from components.spec.schema import boolean_leaves, canonical_path, expects_text


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with its identity.

    Attributes:
        spec: the validated model.
        hash: sha256 hex digest of the canonical JSON of the resolved spec (run identity).
        source: the file it was read from (None when built from a dict).
    """

    spec: Spec
    hash: str
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]


def canonical_hash(data: dict[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(label, [Problem("", f"file not found: {path}")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SpecError(label, [Problem("", f"cannot read {path}: {err}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        raise SpecError(
            label, [Problem("", f"unsupported YAML tag at line {mark.line + 1}: {err.problem} (specs are plain YAML)")]
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        raise SpecError(label, [Problem("", f"YAML syntax error{where}: {reason}")]) from None
    if data is None:
        raise SpecError(label, [Problem("", "file is empty; a spec is a YAML mapping of sections")])
    if not isinstance(data, dict):
        raise SpecError(
            label, [Problem("", f"top level must be a mapping of sections, got {type(data).__name__}")]
        )
    return data


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``child`` over ``base``. Mappings merge key by key, except that a section whose
    ``kind`` changes replaces the base section entirely; lists and scalars replace."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("kind", value.get("kind")) == value.get("kind", old.get("kind")):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_with_extends(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and merge it over the file named by its ``extends:`` (relative to it)."""
    path = path.resolve()
    label = str(path)
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise SpecError(label, [Problem("extends", f"cycle in extends: {cycle}")])
    data = _read_yaml(path, label)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise SpecError(label, [Problem("extends", f"must be a relative file path, got {parent!r}")])
    target = Path(parent)
    if target.is_absolute():
        raise SpecError(label, [Problem("extends", f"must be relative to {path.parent}, got absolute {parent}")])
    target = path.parent / target
    if not target.is_file():
        raise SpecError(label, [Problem("extends", f"file not found: {parent} (looked for {target})")])
    return merge(read_with_extends(target, (*_chain, path)), data)


def parse_override(item: str) -> tuple[list[str], str]:
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected dotted.path=value")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set {item!r}: empty component in path {key!r}")
    return parts, value


def set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set a leaf, creating mappings along the way."""
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str], label: str) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (a field's alias sets the field). Values are YAML scalars/flow
    collections, except where the schema expects text, which keeps the raw string (``--set
    name=123`` stays "123")."""
    out = copy.deepcopy(data)
    problems = []
    for item in overrides:
        try:
            parts, raw = parse_override(item)
        except ValueError as err:
            problems.append(Problem("", str(err)))
            continue
        parts = canonical_path(Spec, out, parts)
        if expects_text(Spec, out, parts):
            value: Any = raw
        else:
            try:
                value = yaml.safe_load(raw) if raw.strip() else raw
            except yaml.YAMLError:
                value = raw
        set_path(out, parts, value)
    if problems:
        raise SpecError(label, problems)
    return out


def validate(data: dict[str, Any], label: str = "<dict>", source: Path | None = None) -> ResolvedSpec:
    """Validate a resolved mapping (extends already merged) into a :class:`ResolvedSpec`."""
    if "extends" in data:
        raise SpecError(label, [Problem("extends", "extends is only allowed in spec files")])
    problems = [Problem(path, "expected a number, got a boolean (true/false)") for path in boolean_leaves(Spec, data)]
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        flagged = {p.path for p in problems}
        problems += [p for p in problems_from_validation(err, data, Spec) if p.path not in flagged]
    if problems:
        raise SpecError(label, problems)
    resolved = ResolvedSpec(spec=spec, hash=canonical_hash(spec.model_dump(mode="json")), source=source)
    if spec.sweep is not None:
        from components.spec.trials import sweep_problems  # trials builds on this module

        problems = sweep_problems(resolved)
        if problems:
            raise SpecError(label, problems)
    return resolved


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ResolvedSpec:
    """Read, merge, override and validate a spec file. Raises :class:`SpecError` on any problem."""
    path = Path(path)
    label = str(path)
    data = read_with_extends(path)
    data = apply_overrides(data, overrides or [], label)
    return validate(data, label, source=path.resolve())
