"""The top-level spec model. Component sections are discriminated unions over the config models
each family registered, so a new kind appears in the spec by registering it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from components.backbones import BACKBONES
from components.losses import LOSSES
from components.noise import NOISES
from components.registry import SpecModel
from components.samplers import SAMPLERS
from components.spec.sections import (
    EvalConfig,
    ResourcesConfig,
    ScheduleConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
)
from components.tasks import TASKS


class Spec(SpecModel):
    """A whole experiment. See README "The spec" for every section."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=100)
    task: TASKS.union()  # type: ignore[valid-type]
    noise: NOISES.union()  # type: ignore[valid-type]
    loss: LOSSES.union()  # type: ignore[valid-type]
    backbone: BACKBONES.union()  # type: ignore[valid-type]
    sampler: SAMPLERS.union()  # type: ignore[valid-type]
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    resources: ResourcesConfig = ResourcesConfig()
    sweep: SweepConfig | None = None
    tracking: TrackingConfig = TrackingConfig()

    SECTIONS_WITH_NOISE_REQUIREMENTS: ClassVar[tuple[str, ...]] = ("loss", "sampler")

    @model_validator(mode="after")
    def _cross_section_checks(self) -> "Spec":
        problems = []
        for section in self.SECTIONS_WITH_NOISE_REQUIREMENTS:
            config = getattr(self, section)
            allowed = getattr(config, "requires_noise", None)
            if allowed and self.noise.kind not in allowed:
                problems.append(
                    f"{section} kind {config.kind!r} needs noise kind {' or '.join(allowed)}, got {self.noise.kind!r}"
                )
        for name, config in self.eval.samplers.items():
            allowed = getattr(config, "requires_noise", None)
            if allowed and self.noise.kind not in allowed:
                problems.append(
                    f"eval.samplers.{name} kind {config.kind!r} needs noise kind {' or '.join(allowed)}, got {self.noise.kind!r}"
                )
        readers = [("loss", self.loss), ("sampler", self.sampler)]
        readers += [(f"eval.samplers.{name}", config) for name, config in self.eval.samplers.items()]
        for path, config in readers:
            allowed = getattr(config, "requires_backbone", None)
            if allowed and self.backbone.kind not in allowed:
                problems.append(
                    f"{path} kind {config.kind!r} needs backbone kind {' or '.join(allowed)}, got {self.backbone.kind!r}"
                )
        allowed = getattr(self.backbone, "requires_loss", None)
        if allowed and self.loss.kind not in allowed:
            problems.append(
                f"backbone kind {self.backbone.kind!r} needs loss kind {' or '.join(allowed)}, got {self.loss.kind!r}"
            )
        trunk = getattr(self.backbone, "trunk", self.backbone)
        if getattr(trunk, "attention", "full") == "structured" and not getattr(self.task, "supplies_attention", False):
            problems.append(
                f"backbone attention 'structured' needs a task that supplies an attention structure (sudoku); "
                f"task kind {self.task.kind!r} supplies positions only (allowed: attention: full)"
            )
        workers = max(1, self.resources.workers)
        if self.train.batch_size % workers:
            problems.append(
                f"train.batch_size {self.train.batch_size} must be divisible by resources.workers {workers}"
            )
        micro = self.train.micro_batch_size
        if micro is not None and (self.train.batch_size // workers) % micro:
            problems.append(
                f"train.micro_batch_size {micro} must divide the per-worker batch {self.train.batch_size // workers}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def eval_samplers(self) -> dict[str, SpecModel]:
        """Named sampler settings for evaluation (the top-level sampler as 'default' if none)."""
        return dict(self.eval.samplers) or {"default": self.sampler}
