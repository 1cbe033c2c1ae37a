"""The per-worker training loop run by Ray Train (local mode, N gloo/NCCL workers, a cluster).

One function, :func:`train_worker`, serves every scale. It resumes exactly from the checkpoint
the driver picked (or the one Ray hands a restarted worker group): model, optimizer, lr schedule,
EMA, step, RNG states and data position, all held by one :class:`TrainState`. Rank 0 evaluates
and logs to MLflow; every rank reports to Ray at every evaluation and checkpoint, so Tune
schedulers see the same metrics. Each optimizer step is :func:`optimizer_step`: gradient
accumulation over micro-batches with one all-reduce, clipping, a non-finite check that does not
wait for the device.
"""

from __future__ import annotations

import logging
import math
import os
import random
import resource
import time
from contextlib import nullcontext
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train.v2._internal.execution import context as ray_train_context

from components.experiment import Experiment, build_experiment
from components.metrics.elbo import estimate_nelbo
from components.metrics.text import bits_per_byte
from components.spec import validate
from components.spec.model import Spec
from components.batch import Batch
from components.losses.base import LossOutput
from pipelines import checkpoint
from pipelines.progress import TrainingProgress
from pipelines.state import TrainState, ema_of
from pipelines.storage import Location
from pipelines.tracking import TAG_CHECKPOINT, RunLogger


@dataclass
class WorkerConfig:
    """What the driver hands every worker (plain data, so Ray can ship it)."""

    spec: dict[str, Any]
    run_uri: str  # the run folder in Ray Train storage (a local path or a URI)
    cache_dir: str
    tracking_uri: str
    mlflow_run_id: str
    workdir: str  # the driver's working folder: relative paths in the spec (data, kernel files) resolve there
    fit_id: str  # one per TorchTrainer.fit: tells a restart within this fit from the first start
    resume_step: int | None = None  # the checkpoint the driver checked loads; None = start at step 0
    local_mode: bool = False  # Ray Train local mode: Ray does not persist checkpoints, the worker uploads them


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _build_optimizer(model: torch.nn.Module, spec: Spec) -> torch.optim.Optimizer:
    """AdamW/Adam; weight decay on matrices only (not norms, biases or gains)."""
    cfg = spec.train.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    cls = torch.optim.AdamW if cfg.kind == "adamw" else torch.optim.Adam
    return cls(groups, lr=spec.schedule.lr.peak, betas=cfg.betas, eps=cfg.eps)


def evaluate(exp: Experiment, model: torch.nn.Module, device: torch.device, seed: int) -> tuple[dict[str, float], dict[str, str]]:
    """Validation NELBO (PPL, bits/token) and the task's own metrics, with a fixed seed that
    leaves the training RNG streams untouched. Returns (metrics without prefix, artifacts)."""
    spec = exp.spec
    devices = [device] if device.type == "cuda" else []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=devices), autocast:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        batches = (b.to(device) for b in exp.task.eval_batches(spec.eval.batch_size, spec.eval.batches))
        nelbo = estimate_nelbo(model, exp.loss, batches, spec.eval.elbo, exp.time.eps, generator)
        result = exp.task.evaluate(
            model,
            exp.noise,
            exp.samplers,
            num_samples=spec.eval.num_samples,
            batch_size=spec.eval.batch_size,
            data=spec.eval.data,
            device=device,
        )
    model.train(was_training)
    metrics = {
        "elbo": nelbo.nll_per_token,
        "ppl": nelbo.ppl,
        "bits_per_token": nelbo.bits_per_token,
        **result.metrics,
    }
    if "bytes_per_token" in result.metrics:  # text: comparable across tokenizers
        metrics["bits_per_byte"] = bits_per_byte(nelbo.nll_per_token, result.metrics["bytes_per_token"])
    artifacts = dict(result.artifacts)
    if result.samples:
        artifacts["samples.txt"] = "\n\n".join(result.samples)
    return metrics, artifacts


class NonFiniteError(RuntimeError):
    """The loss or gradient norm was not finite (the run fails, its last good checkpoint kept)."""


class _Window:
    """Running sums of training metrics between two log steps, kept on the device (no host sync)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.steps = 0
        self.seconds = 0.0  # training time only (evaluation and checkpoints excluded)
        self.data_seconds = 0.0  # of which waiting for the next batch

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += 1

    def means(self, device: torch.device) -> dict[str, float]:
        """Mean over the window, averaged over ranks (the one host sync per log step)."""
        keys = sorted(self.sums)
        values = torch.stack([self.sums[k].to(device, torch.float64) for k in keys]) / max(1, self.count)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(values)
            values /= dist.get_world_size()
        return dict(zip(keys, values.tolist()))


@dataclass
class StepResult:
    """One optimizer step: its gradient norm (before clipping) and whether it was finite,
    both 0-dim device tensors (reading them waits for the device)."""

    grad_norm: torch.Tensor
    finite: torch.Tensor


def _sync_context(model: torch.nn.Module, world: int, last: bool):
    """DDP all-reduces gradients on the last micro-batch only; ``no_sync`` before it."""
    return model.no_sync() if world > 1 and not last else nullcontext()


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[Batch, torch.Tensor]],
    objective: Callable[[torch.nn.Module, Batch, torch.Tensor], LossOutput],
    *,
    accum: int,
    world: int,
    clip: float,
    autocast: Any,
    on_micro: Callable[[LossOutput], None] = lambda out: None,
    skip_nonfinite: bool = False,
) -> StepResult:
    """Accumulate gradients over ``accum`` micro-batches (each loss / accum; DDP averages over
    ranks, so the update is the one for the mean over the global batch), clip and step.

    ``skip_nonfinite``: read the finite flag (one host sync) and leave the weights unchanged on
    a non-finite step; otherwise the step is taken and the caller checks ``finite`` later.
    """
    optimizer.zero_grad(set_to_none=True)
    loss_sum = None
    for i, (batch, t) in enumerate(micro_batches):
        with _sync_context(model, world, last=i == accum - 1):
            with autocast:
                out = objective(model, batch, t)
            (out.loss / accum).backward()
        loss_sum = out.loss.detach() if loss_sum is None else loss_sum + out.loss.detach()
        on_micro(out)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    finite = torch.isfinite(grad_norm) & torch.isfinite(loss_sum)
    if skip_nonfinite and not bool(finite):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(grad_norm, finite)
    optimizer.step()
    return StepResult(grad_norm, finite)


def _peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of a known accelerator (for MFU), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    table = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12)}
    for key, (bf16, fp32) in table.items():
        if key in name:
            return bf16 if precision == "bf16" else fp32
    return None


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``: train the spec in ``config`` (a :class:`WorkerConfig`)."""
    job = WorkerConfig(**config)
    # Ray Train logs one INFO line per report under its module's file path, outside the
    # "ray.train" loggers LoggingConfig sets; the progress display replaces those lines.
    logging.getLogger(ray_train_context.__file__).setLevel(logging.WARNING)
    if Path(job.workdir).is_dir():  # absent on other nodes of a cluster: specs there need absolute paths
        os.chdir(job.workdir)
    resolved = validate(job.spec)
    spec = resolved.spec
    run = Location(job.run_uri)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))

    exp = build_experiment(spec, Path(job.cache_dir))
    module = exp.model.to(device)
    model = ray.train.torch.prepare_model(module, parallel_strategy="ddp" if world > 1 else None)
    if spec.train.compile:
        model = torch.compile(model)
    optimizer = _build_optimizer(module, spec)
    total = spec.train.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: spec.schedule.lr.factor(s, total))

    per_worker = spec.train.batch_size // world
    micro = spec.train.micro_batch_size or per_worker
    accum = per_worker // micro
    seed = spec.train.seed
    torch.manual_seed(seed * 65537 + rank + 1)  # noise draws differ across ranks
    random.seed(seed * 65537 + rank + 1)
    state = TrainState(
        module,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=ema_of(module, spec.train.ema),
        time_generator=torch.Generator().manual_seed(seed),  # identical on every rank (global strata)
        stream=exp.task.train_stream(micro, rank=rank, world_size=world, seed=seed),
        world_size=world,
        device=device,
        spec_hash=resolved.hash,
    )

    resume = checkpoint.restart_step(job.fit_id)
    resume = job.resume_step if resume is None else resume
    if resume is not None:
        shared, own = checkpoint.load(run.child(checkpoint.folder_name(resume)), rank)
        state.load_state_dict(shared)
        state.load_rank_state_dict(own)

    logger = RunLogger(job.tracking_uri, job.mlflow_run_id) if rank == 0 else None
    progress = TrainingProgress(spec.name, total, state.step, enabled=rank == 0)
    if resume is not None:
        progress.message(f"resumed from {checkpoint.folder_name(resume)} (step {state.step})")
    else:
        progress.message(
            f"{module.num_parameters():,} parameters (without embeddings), {world} worker(s), "
            f"{per_worker} sequences/worker/step in {accum} micro-batch(es) on {device}"
        )

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")
    clip = spec.train.grad_clip if spec.train.grad_clip is not None else math.inf
    tokens_per_step = spec.train.batch_size * exp.task.seq_len
    flops_per_token = module.flops_per_token(exp.task.seq_len)
    peak = _peak_flops(device, spec.train.precision)
    allowed_nonfinite = spec.train.max_nonfinite_steps
    skipped = 0
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step, on device
    window = _Window()
    eval_seed = seed + 10_007
    last_report: dict[str, float] = {}
    model.train()

    def check_finite() -> None:
        """Raise at the first non-finite step (read once per log step or checkpoint)."""
        bad = int(first_bad)
        if bad >= 0:
            raise NonFiniteError(
                f"non-finite loss or gradient norm at step {bad}; the run stops there and keeps its last "
                f"checkpoint from before it (set train.max_nonfinite_steps to skip such steps instead)"
            )

    def micro_batches() -> Iterable[tuple[Batch, torch.Tensor]]:
        for _ in range(accum):
            waited = time.perf_counter()
            batch = next(state.stream).to(device)
            t = exp.time.sample(micro, state.time_generator, rank, world).to(device, non_blocking=True)
            window.data_seconds += time.perf_counter() - waited
            yield batch, t

    while state.step < total:
        started = time.perf_counter()
        for part in (exp.noise, exp.loss, module):
            part.set_progress(state.step / total)
        result = optimizer_step(
            model, optimizer, micro_batches(), exp.loss.objective,
            accum=accum, world=world, clip=clip, autocast=autocast,
            on_micro=lambda out: window.add({"loss": out.loss, **out.metrics}),
            skip_nonfinite=allowed_nonfinite > 0,
        )
        state.step += 1
        step = state.step
        if allowed_nonfinite > 0:
            if not bool(result.finite):
                skipped += 1
                if skipped > allowed_nonfinite:
                    raise NonFiniteError(
                        f"non-finite loss or gradient norm at step {step}: {skipped} such steps, more than "
                        f"train.max_nonfinite_steps={allowed_nonfinite}"
                    )
        else:
            first_bad = torch.where((first_bad < 0) & ~result.finite, step, first_bad)
        scheduler.step()
        state.update_ema()
        window.steps += 1
        window.seconds += time.perf_counter() - started

        if step % spec.train.log_every == 0 or step == total:
            check_finite()
            means = window.means(device)
            rate = tokens_per_step * window.steps / max(window.seconds, 1e-9)
            train_metrics = {f"train/{k}": v for k, v in means.items()} | {
                "train/lr": scheduler.get_last_lr()[0],
                "train/grad_norm": float(result.grad_norm),
                "train/tokens_per_s": rate,
                "train/tokens": float(tokens_per_step * step),
                "train/flops_per_token": flops_per_token,
                "train/data_wait_fraction": window.data_seconds / max(window.seconds, 1e-9),
                "train/nonfinite_steps": float(skipped),
                "train/peak_memory_gib": _peak_memory_gib(device),
            }
            if peak is not None:
                train_metrics["train/mfu"] = rate * flops_per_token / (peak * world)
            last_report = train_metrics
            if logger is not None:
                logger.log_metrics(train_metrics, step)
            progress.update(step, means["loss"], rate, (total - step) * window.seconds / window.steps)
            window = _Window()

        report: dict[str, float] | None = None
        if step % spec.eval.every == 0 or step == total:
            report = {"step": step, **last_report}
            if rank == 0:
                started = time.perf_counter()
                metrics, artifacts = evaluate(exp, state.eval_model(), device, eval_seed)
                metrics["seconds"] = time.perf_counter() - started
                eval_metrics = {f"eval/{k}": v for k, v in metrics.items()}
                logger.log_metrics(eval_metrics, step)
                for name, text in artifacts.items():
                    logger.log_text(text, f"eval/step_{step:08d}/{name}")
                report |= eval_metrics
                progress.message(
                    f"step {step}: eval elbo {metrics['elbo']:.4f} nats/token, ppl {metrics['ppl']:.3f}"
                )

        if step % spec.train.checkpoint_every == 0 or step == total:
            check_finite()
            if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
                raise NonFiniteError(f"non-finite weights after step {step}; the run keeps its last checkpoint from before it")
            folder = checkpoint.save(
                run, step, rank, state.state_dict() if rank == 0 else None, state.rank_state_dict(),
                report or {"step": step, **last_report},
                fit_id=job.fit_id, local_mode=job.local_mode, keep=spec.train.keep_checkpoints,
            )
            if logger is not None:
                logger.set_tags({TAG_CHECKPOINT: folder.uri})
        elif report is not None:
            ray.train.report(report)
    progress.close()


def worker_config(**fields: Any) -> dict[str, Any]:
    """A :class:`WorkerConfig` as the plain dict Ray ships to workers."""
    return asdict(WorkerConfig(**fields))
