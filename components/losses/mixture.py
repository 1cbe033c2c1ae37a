"""Weighted sum of other losses on one shared backbone, e.g. 0.3 AR + 0.7 MDLM::

    loss:
      kind: mixture
      terms:
        ar:   {weight: 0.3, loss: {kind: ar}}
        mdlm: {weight: 0.7, loss: {kind: mdlm}}
      elbo: mdlm

Each term runs its own pass (:meth:`Loss.objective`) on the same batch and times: the ``ar`` term a
causal pass over the shifted clean tokens, a diffusion term a bidirectional pass over its z_t.
The backbone must accept both (``backbone: {kind: causal}`` does: ``causal=True`` on request,
bidirectional otherwise). The training loss is sum_k w_k loss_k; the reported ``elbo`` (validation
ELBO, PPL, bits per token) is the named term's, since a weighted sum of two bounds bounds neither
model. Terms may be any registered loss except another mixture.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field, SerializeAsAny, StringConstraints, field_validator, model_validator
from torch import nn

from components.batch import Batch
from components.losses.base import Loss, LossOutput
from components.losses.registry import LOSSES
from components.noise.base import NoiseProcess
from components.registry import BuildError, SpecModel

TermName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class MixtureTerm(SpecModel):
    """One term: ``{weight: 0.3, loss: {kind: ar}}``."""

    weight: float = Field(gt=0.0, le=1000.0, description="factor of this term in the training loss")
    loss: SerializeAsAny[SpecModel] = Field(description="any registered loss section except a mixture")

    @field_validator("loss", mode="before")
    @classmethod
    def _registered_loss(cls, value: Any) -> SpecModel:
        """Validated against the losses registered when the spec is read (not at import), so a
        kind registered after this module is accepted too."""
        if isinstance(value, MixtureLossConfig) or (isinstance(value, dict) and value.get("kind") == "mixture"):
            raise ValueError("a mixture term cannot be another mixture")
        try:
            return LOSSES.validate(value)
        except BuildError as err:
            raise ValueError(str(err)) from None


class MixtureLossConfig(SpecModel):
    """``loss: {kind: mixture, terms: {name: {weight, loss}}, elbo: name}``."""

    kind: Literal["mixture"] = "mixture"
    terms: dict[TermName, MixtureTerm] = Field(
        min_length=1, description="name -> term; names prefix the terms' training metrics (train/<name>/...)"
    )
    elbo: str | None = Field(None, description="term whose elbo is the run's (validation PPL); default the first")

    @model_validator(mode="after")
    def _consistent(self) -> "MixtureLossConfig":
        if self.elbo is not None and self.elbo not in self.terms:
            raise ValueError(f"elbo names no term: {self.elbo!r}; terms are {', '.join(self.terms)}")
        for family in ("noise", "backbone"):
            if self._common(f"requires_{family}") == ():
                needs = {name: getattr(term.loss, f"requires_{family}", None) for name, term in self.terms.items()}
                raise ValueError(f"the terms need {family} kinds with nothing in common: {needs}")
        return self

    def _common(self, attribute: str) -> tuple[str, ...] | None:
        """The kinds every term's ``attribute`` (requires_noise, requires_backbone) allows; None if
        no term restricts them."""
        allowed: tuple[str, ...] | None = None
        for term in self.terms.values():
            kinds = getattr(term.loss, attribute, None)
            if kinds:
                allowed = tuple(kinds) if allowed is None else tuple(k for k in allowed if k in kinds)
        return allowed

    @property
    def requires_noise(self) -> tuple[str, ...] | None:
        """Noise kinds every term accepts (read by the spec's cross-section check); None if no term
        restricts the noise."""
        return self._common("requires_noise")

    @property
    def requires_backbone(self) -> tuple[str, ...] | None:
        """Backbone kinds every term accepts (read by the spec's cross-section check); None if no
        term restricts the backbone."""
        return self._common("requires_backbone")

    @property
    def elbo_term(self) -> str:
        return self.elbo if self.elbo is not None else next(iter(self.terms))


@LOSSES.register(MixtureLossConfig)
class MixtureLoss(Loss):
    """loss = sum_k w_k loss_k, elbo = the ``elbo`` term's. Metrics: ``elbo`` (that term's) and
    every term's metrics and loss under ``<name>/``."""

    def __init__(self, config: MixtureLossConfig, *, noise: NoiseProcess):
        self.config = config
        self.noise = noise
        self.weights = {name: term.weight for name, term in config.terms.items()}
        self.terms: dict[str, Loss] = {name: LOSSES.build(term.loss, noise=noise) for name, term in config.terms.items()}

    def set_progress(self, fraction: float) -> None:
        for term in self.terms.values():
            term.set_progress(fraction)

    def bound_time(self) -> float:
        return self.terms[self.config.elbo_term].bound_time()

    def prior_term(self, x0: torch.Tensor) -> torch.Tensor:
        return self.terms[self.config.elbo_term].prior_term(x0)

    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> LossOutput:
        """Not defined for one set of logits: every term needs its own pass (use objective)."""
        raise NotImplementedError("a mixture runs one pass per term; call objective(model, batch, t)")

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Every term's objective on ``batch`` at times ``t`` (Float[B]), combined."""
        outputs = {name: term.objective(model, batch, t) for name, term in self.terms.items()}
        loss = sum(self.weights[name] * out.loss for name, out in outputs.items())
        chosen = outputs[self.config.elbo_term]
        metrics = {"elbo": (chosen.elbo.sum() / batch.scored.sum().clamp_min(1)).detach().float()}
        for name, out in outputs.items():
            metrics[f"{name}/loss"] = out.loss.detach().float()
            metrics.update({f"{name}/{key}": value for key, value in out.metrics.items()})
        return LossOutput(loss=loss, elbo=chosen.elbo, metrics=metrics)
