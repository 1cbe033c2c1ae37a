"""Component registries keyed by the YAML ``kind:`` string.

Each component family (noise, losses, backbones, ...) owns one :class:`Registry`. A kind is
one pydantic config model (with ``kind: Literal["..."]``) plus one implementation whose
constructor takes the validated config as its first argument and the build context (e.g.
``vocab_size``, ``mask_id``, ``noise``) as keyword arguments it names explicitly::

    NOISES = Registry("noise")

    class GiddConfig(SpecModel):
        kind: Literal["gidd"] = "gidd"
        p_uniform: float = Field(0.0, ge=0.0, lt=1.0)

    @NOISES.register(GiddConfig)
    class GiddNoise(NoiseProcess):
        def __init__(self, config: GiddConfig, *, vocab_size: int, mask_id: int): ...

``NOISES.build({"kind": "gidd", "p_uniform": 0.1}, vocab_size=V, mask_id=V - 1)`` validates the
section, then passes only the context keywords the constructor declares.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Callable, Generic, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

T = TypeVar("T")


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class BuildError(ValueError):
    """A section could not be turned into a component (bad kind, bad field, missing context)."""


class Registry(Generic[T]):
    """Maps ``kind`` strings of one component family to (config model, implementation)."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, tuple[type[SpecModel], Callable[..., T]]] = {}

    def register(self, config: type[SpecModel]) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class decorator registering ``impl`` under ``config``'s ``kind`` literal."""
        kind = config.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{config.__name__}.kind needs a string default (the YAML kind)")
        if kind in self._entries:
            raise ValueError(f"{self.family} kind {kind!r} registered twice")

        def decorate(impl: Callable[..., T]) -> Callable[..., T]:
            self._entries[kind] = (config, impl)
            return impl

        return decorate

    @property
    def kinds(self) -> list[str]:
        return sorted(self._entries)

    def config_model(self, kind: str) -> type[SpecModel]:
        return self._entries[kind][0]

    def implementation(self, kind: str) -> Callable[..., T]:
        return self._entries[kind][1]

    def union(self) -> Any:
        """Annotated discriminated union of all registered config models (for spec fields)."""
        models = tuple(config for config, _ in self._entries.values())
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007

    def validate(self, section: SpecModel | dict[str, Any]) -> SpecModel:
        """Validate a plain dict (or pass through an already-validated config model)."""
        if isinstance(section, SpecModel):
            return section
        if not isinstance(section, dict) or "kind" not in section:
            raise BuildError(f"{self.family}: expected a mapping with 'kind' (one of {self.kinds})")
        kind = section["kind"]
        if kind not in self._entries:
            raise BuildError(f"{self.family}: unknown kind {kind!r}; allowed: {', '.join(self.kinds)}")
        try:
            return TypeAdapter(self._entries[kind][0]).validate_python(section)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
            )
            raise BuildError(f"{self.family} ({kind}): {problems}") from None

    def build(self, section: SpecModel | dict[str, Any], **context: Any) -> T:
        """Build the component for ``section``, passing the context keywords it declares."""
        config = self.validate(section)
        impl = self._entries[config.kind][1]
        params = inspect.signature(impl).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        wanted = {k: v for k, v in context.items() if takes_all or k in params}
        missing = [
            name
            for name, p in params.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
            and p.default is inspect.Parameter.empty
            and name not in wanted
        ]
        if missing:
            raise BuildError(
                f"{self.family} ({config.kind}) needs build context: {', '.join(missing)}"
            )
        return impl(config, **wanted)
