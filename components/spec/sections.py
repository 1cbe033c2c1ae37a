"""Spec sections that are not component families: schedule, train, eval, resources, sweep,
tracking. Component sections (task, noise, loss, backbone, sampler) are unions of the config
models registered by each family; see :mod:`components.spec.model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from components.registry import SpecModel
from components.samplers import SAMPLERS
from components.schedules import TIME_SAMPLERS, LrSchedule

# Upper bounds of resource-shaped fields: generous for one job on one cluster, small enough that
# a typo (an extra digit, 1e29) is an error instead of an allocation of terabytes.
MAX_STEPS = 10_000_000  # optimizer steps
MAX_BATCH = 65_536  # sequences per batch (global, micro or eval)
MAX_EVAL_BATCHES = 10_000  # validation batches per evaluation
MAX_SAMPLES = 100_000  # generations per evaluation
MAX_WORKERS = 4096  # Ray Train workers
MAX_CPUS_PER_WORKER = 1024.0
MAX_GPUS_PER_WORKER = 64.0
MAX_TRIALS = 10_000  # sweep repeats or draws, trials at once

# --------------------------------------------------------------------------- train


class OptimizerConfig(SpecModel):
    kind: Literal["adamw", "adam"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = Field(1e-9, gt=0.0, le=1e-3)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"each beta must be in [0, 1), got {list(betas)}")
        return betas


class TrainConfig(SpecModel):
    steps: int = Field(1000, ge=1, le=MAX_STEPS, description="optimizer steps")
    batch_size: int = Field(64, ge=1, le=MAX_BATCH, description="global batch (sequences per optimizer step)")
    micro_batch_size: int | None = Field(
        None, ge=1, le=MAX_BATCH, description="sequences per forward pass per worker; default batch_size / workers"
    )
    optimizer: OptimizerConfig = OptimizerConfig()
    grad_clip: float | None = Field(1.0, gt=0.0, description="max global grad norm; null disables")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 = autocast, fp32 master weights")
    ema: float | None = Field(None, ge=0.0, lt=1.0, description="EMA decay of weights used for eval")
    compile: bool = Field(False, description="torch.compile the backbone")
    seed: int = Field(0, ge=0)
    log_every: int = Field(10, ge=1, description="steps between logged training metrics")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    storage: str = Field(
        "runs", description="Ray Train storage for checkpoints: a local folder or a URI such as s3://bucket/path"
    )
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="newest checkpoints kept per run")
    max_nonfinite_steps: int = Field(
        0, ge=0, le=MAX_STEPS, description="steps with a non-finite loss or gradient norm skipped before the run fails; 0 = fail at the first"
    )


# --------------------------------------------------------------------------- eval


class ElboEstimator(SpecModel):
    """How validation NELBO is estimated (recorded with every run; docs/math.md, "The bound
    reported as eval/elbo")."""

    kind: Literal["mc", "quadrature"] = Field(
        "mc",
        description="mc: t_samples low-discrepancy draws per sequence; quadrature: t_samples Gauss-Legendre "
        "nodes mapped twice through s -> sin^2(pi s / 2) onto (0, T), 8 to 64 of them",
    )
    t_samples: int = Field(1, ge=1, le=1024)

    @model_validator(mode="after")
    def _node_range(self) -> "ElboEstimator":
        if self.kind == "quadrature" and not 8 <= self.t_samples <= 64:
            raise ValueError(
                f"quadrature needs 8 <= t_samples <= 64 (got {self.t_samples}): fewer nodes misweigh even a "
                "constant integrand (by 3% at 4 nodes, 50% at 2), more put the outer nodes within float64 "
                "rounding of the singular ends t = 0 and t = T"
            )
        return self


class EvalConfig(SpecModel):
    every: int = Field(1000, ge=1, description="steps between evaluations (also run at the end)")
    batches: int = Field(8, ge=1, le=MAX_EVAL_BATCHES, description="validation batches for the ELBO")
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    elbo: ElboEstimator = ElboEstimator()
    num_samples: int = Field(64, ge=0, le=MAX_SAMPLES, description="generations for task metrics")
    samplers: dict[str, SAMPLERS.union()] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="named sampler settings for task metrics; empty = the top-level sampler as 'default'",
    )
    data: Path | None = Field(
        None,
        validation_alias=AliasChoices("data", "puzzles"),
        description="external evaluation file in the task's format, checked before any work starts; `puzzles` is an alias",
    )


# --------------------------------------------------------------------------- resources


class ResourcesConfig(SpecModel):
    workers: int = Field(0, ge=0, le=MAX_WORKERS, description="0 = Ray Train local mode (in-process)")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=MAX_CPUS_PER_WORKER, allow_inf_nan=False)
    gpus_per_worker: float = Field(0.0, ge=0.0, le=MAX_GPUS_PER_WORKER, allow_inf_nan=False)
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl on GPU, gloo on CPU")
    max_failures: int = Field(0, ge=-1, le=1000, description="worker-group restarts from the last checkpoint; -1 = unlimited")

    @model_validator(mode="after")
    def _nccl_needs_gpu(self) -> "ResourcesConfig":
        if self.backend == "nccl" and self.gpus_per_worker == 0:
            raise ValueError("backend 'nccl' needs gpus_per_worker > 0; use 'gloo' or 'auto' on CPU")
        return self


# --------------------------------------------------------------------------- sweep


class SweepDimension(SpecModel):
    """Exactly one of the keys: grid / choice (lists), uniform / loguniform / randint ([low, high])."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SweepDimension":
        given = [k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of grid, choice, uniform, loguniform, randint (got {given or 'none'})"
            )
        kind = given[0]
        value = getattr(self, kind)
        if kind in ("grid", "choice") and not value:
            raise ValueError(f"{kind} needs at least one value")
        if kind in ("uniform", "loguniform", "randint") and not value[0] < value[1]:
            raise ValueError(f"{kind} needs [low, high] with low < high, got {list(value)}")
        if kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {value[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None)

    def probe_values(self) -> list[Any]:
        """Values that every trial's spec must accept: all listed values, or the range ends."""
        value = getattr(self, self.kind)
        if self.kind == "randint":
            return [value[0], value[1] - 1]
        return list(value)


class AshaConfig(SpecModel):
    kind: Literal["asha"] = "asha"
    grace_steps: int = Field(100, ge=1, description="optimizer steps before a trial may be stopped")
    reduction_factor: float = Field(2.0, gt=1.0)


class FifoConfig(SpecModel):
    kind: Literal["fifo"] = "fifo"


class SweepConfig(SpecModel):
    metric: str = Field(description="metric to rank trials by, e.g. eval/elbo or eval/easy/k5/puzzle_accuracy")
    mode: Literal["max", "min"]
    space: dict[str, SweepDimension] = Field(min_length=1, description="dotted spec path -> values")
    samples: int = Field(1, ge=1, le=MAX_TRIALS, description="draws of the non-grid dimensions (a grid lists each trial once)")
    seeds: int = Field(1, ge=1, le=MAX_TRIALS, description="runs of each configuration, with train.seed = train.seed + 0..seeds-1")
    scheduler: AshaConfig | FifoConfig = Field(default_factory=FifoConfig, discriminator="kind")
    search: Literal["random", "optuna"] = "random"
    max_concurrent: int | None = Field(None, ge=1, le=MAX_TRIALS, description="default: derived from resources and the cluster")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _optuna_has_no_grid(self) -> "SweepConfig":
        if self.search == "optuna":
            grids = [path for path, dim in self.space.items() if dim.kind == "grid"]
            if grids:
                raise ValueError(f"search 'optuna' cannot take grid dimensions ({', '.join(grids)}); use choice")
        if self.seeds > 1 and "train.seed" in self.space:
            raise ValueError("seeds > 1 sets train.seed per run; remove train.seed from the space or set seeds: 1")
        return self


# --------------------------------------------------------------------------- tracking


class TrackingConfig(SpecModel):
    experiment: str = Field("difflab", min_length=1, max_length=500)
    uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else ./mlflow.db")
    run_name: str | None = Field(None, description="default: the spec's name")
    tags: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- schedule


class ScheduleConfig(SpecModel):
    time: TIME_SAMPLERS.union() = Field(  # type: ignore[valid-type]
        default_factory=lambda: TIME_SAMPLERS.validate({"kind": "low_discrepancy"})
    )
    lr: LrSchedule = LrSchedule()
