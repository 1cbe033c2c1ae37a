"""Walking the spec schema along a dotted path (for --set typing and error hints)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel


def _members(annotation: Any) -> list[Any]:
    """Flatten Annotated / Optional / Union into their member types."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(annotation):
            out += _members(arg)
        return out
    return [annotation]


def _pick(members: list[Any], node: Any) -> Any | None:
    """Choose the member type matching ``node`` (by its ``kind`` for tagged unions)."""
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if models:
        if len(models) == 1:
            return models[0]
        kind = node.get("kind") if isinstance(node, dict) else None
        for m in models:
            field = m.model_fields.get("kind")
            if field is not None and field.default == kind:
                return m
        return None
    containers = [m for m in members if get_origin(m) in (dict, list)]
    return containers[0] if containers else (members[0] if members else None)


def annotation_at(model: type[BaseModel], raw: Any, parts: list[str]) -> Any | None:
    """The annotation of the field at ``parts`` below ``model`` (None if no such field)."""
    annotation: Any = model
    node = raw
    for part in parts:
        current = _pick(_members(annotation), node)
        if current is None:
            return None
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(current) is dict:
            annotation = get_args(current)[1]
        elif get_origin(current) is list and part.isdigit():
            annotation = get_args(current)[0]
        else:
            return None
        node = node.get(part) if isinstance(node, dict) else None
    return annotation


def model_at(model: type[BaseModel], raw: Any, parts: list[str]) -> type[BaseModel] | None:
    """The pydantic model that holds the fields at ``parts`` (None if not a model)."""
    annotation = annotation_at(model, raw, parts) if parts else model
    node = raw
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    picked = _pick(_members(annotation), node) if annotation is not None else None
    return picked if isinstance(picked, type) and issubclass(picked, BaseModel) else None


def canonical_path(model: type[BaseModel], raw: Any, parts: list[str]) -> list[str]:
    """``parts`` with each field alias replaced by the field's name (``eval.puzzles`` ->
    ``eval.data``), so an override replaces the field instead of adding a second key."""
    out: list[str] = []
    for part in parts:
        holder = model_at(model, raw, out)
        if holder is not None and part not in holder.model_fields:
            for name, field in holder.model_fields.items():
                alias = field.validation_alias
                if isinstance(alias, AliasChoices) and part in alias.choices:
                    part = name
                    break
        out.append(part)
    return out


def expects_text(model: type[BaseModel], raw: Any, parts: list[str]) -> bool:
    """True if the leaf at ``parts`` takes only strings or paths, so a --set value stays text."""
    annotation = annotation_at(model, raw, parts)
    if annotation is None:
        return False
    members = [m for m in _members(annotation) if m is not type(None)]
    for m in members:
        if get_origin(m) is Literal:
            if not all(isinstance(v, str) for v in get_args(m)):
                return False
        elif m not in (str, Path):
            return False
    return bool(members)


def _boolean_for_number(value: Any, annotation: Any) -> bool:
    """True if ``value`` holds a bool where ``annotation`` takes a number but no bool, looking
    into lists and tuples (pydantic would otherwise read YAML ``true`` as 1)."""
    members = _members(annotation)
    if isinstance(value, bool):
        return bool({int, float} & set(members)) and bool not in members and Any not in members
    if not isinstance(value, (list, tuple)):
        return False
    for container in (m for m in members if get_origin(m) in (list, tuple)):
        elements = [a for a in get_args(container) if a is not Ellipsis]
        if any(_boolean_for_number(item, Union[tuple(elements)]) for item in value):  # noqa: UP007
            return True
    return False


def boolean_leaves(model: type[BaseModel], raw: dict[str, Any]) -> list[str]:
    """Dotted paths of ``raw`` (a mapping validated by ``model``) that hold a boolean where the
    field takes a number."""
    found: list[str] = []

    def walk(node: dict[str, Any], parents: list[str]) -> None:
        for key, value in node.items():
            parts = [*parents, str(key)]
            if isinstance(value, dict):
                walk(value, parts)
                continue
            annotation = annotation_at(model, raw, parts)
            if annotation is not None and _boolean_for_number(value, annotation):
                found.append(".".join(parts))

    walk(raw, [])
    return found
