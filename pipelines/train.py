"""The per-worker training loop run by Ray Train (local mode, N gloo/NCCL workers, a cluster).

One function, :func:`train_worker`, serves every scale. It resumes exactly from the latest
checkpoint in the run folder (model, optimizer, lr schedule, EMA, step, RNG states, data
position), evaluates on rank 0, logs to MLflow on rank 0 and reports to Ray (all ranks, at every
evaluation, so Tune schedulers see the same metrics).
"""

from __future__ import annotations

import copy
import math
import os
import random
import resource
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from components.experiment import Experiment, build_experiment
from components.metrics.elbo import estimate_nelbo
from components.metrics.text import bits_per_byte
from components.spec import validate
from components.spec.model import Spec
from pipelines import checkpoint
from pipelines.progress import TrainingProgress
from pipelines.tracking import TAG_CHECKPOINT, RunLogger


@dataclass
class WorkerConfig:
    """What the driver hands every worker (plain data, so Ray can ship it)."""

    spec: dict[str, Any]
    run_dir: str
    cache_dir: str
    tracking_uri: str
    mlflow_run_id: str
    workdir: str  # the driver's working folder: relative paths in the spec (data, kernel files) resolve there


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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


class _Window:
    """Running sums of training metrics between two log steps."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.steps = 0
        self.seconds = 0.0  # training time only (evaluation and checkpoints excluded)

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def means(self, device: torch.device) -> dict[str, float]:
        """Mean over the window, averaged over ranks."""
        keys = sorted(self.sums)
        values = torch.tensor([self.sums[k] / max(1, self.count) for k in keys], dtype=torch.float64, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(values)
            values /= dist.get_world_size()
        return dict(zip(keys, values.tolist()))


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``: train the spec in ``config`` (a :class:`WorkerConfig`)."""
    job = WorkerConfig(**config)
    if Path(job.workdir).is_dir():  # absent on other nodes of a cluster: specs there need absolute paths
        os.chdir(job.workdir)
    resolved = validate(job.spec)
    spec = resolved.spec
    run_dir = Path(job.run_dir)
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
    ema = copy.deepcopy(module).requires_grad_(False) if spec.train.ema is not None else None
    optimizer = _build_optimizer(module, spec)
    total = spec.train.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: spec.schedule.lr.factor(s, total))

    per_worker = spec.train.batch_size // world
    micro = spec.train.micro_batch_size or per_worker
    accum = per_worker // micro
    seed = spec.train.seed
    time_generator = torch.Generator().manual_seed(seed)  # identical on every rank (global strata)
    torch.manual_seed(seed * 65537 + rank + 1)  # noise draws differ across ranks
    random.seed(seed * 65537 + rank + 1)
    stream = exp.task.train_stream(micro, rank=rank, world_size=world, seed=seed)

    step = 0
    latest = checkpoint.latest_checkpoint(run_dir)
    if latest is not None:
        shared, own = checkpoint.load(latest, rank)
        module.load_state_dict(shared["model"])
        optimizer.load_state_dict(shared["optimizer"])
        scheduler.load_state_dict(shared["scheduler"])
        time_generator.set_state(shared["time_rng"])
        if ema is not None:
            ema.load_state_dict(shared["ema"])
        step = int(shared["step"])
        if own is not None:
            torch.set_rng_state(own["torch_rng"])
            if device.type == "cuda" and own.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(own["cuda_rng"], device)
            random.setstate(own["python_rng"])
            stream.load_state_dict(own["data"])

    logger = RunLogger(job.tracking_uri, job.mlflow_run_id) if rank == 0 else None
    progress = TrainingProgress(spec.name, total, step, enabled=rank == 0)
    if latest is not None:
        progress.message(f"resumed from {latest.name} (step {step})")
    elif rank == 0 and step == 0:
        progress.message(
            f"{module.num_parameters():,} parameters (without embeddings), {world} worker(s), "
            f"{per_worker} sequences/worker/step in {accum} micro-batch(es) on {device}"
        )

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")
    clip = spec.train.grad_clip if spec.train.grad_clip is not None else math.inf
    tokens_per_step = spec.train.batch_size * exp.task.seq_len
    window = _Window()
    eval_seed = seed + 10_007
    last_report: dict[str, float] = {}
    model.train()

    while step < total:
        started = time.perf_counter()
        for part in (exp.noise, exp.loss, module):
            part.set_progress(step / total)
        optimizer.zero_grad(set_to_none=True)
        for i in range(accum):
            batch = next(stream).to(device)
            t = exp.time.sample(micro, time_generator, rank, world).to(device)
            sync = model.no_sync() if world > 1 and i < accum - 1 else nullcontext()
            with sync, autocast:
                out = exp.loss.objective(model, batch, t)
            with sync:
                (out.loss / accum).backward()
            window.add({"loss": out.loss.detach(), **out.metrics})
        grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(module.parameters()), 1.0 - spec.train.ema)
        step += 1
        window.steps += 1
        window.seconds += time.perf_counter() - started

        if step % spec.train.log_every == 0 or step == total:
            means = window.means(device)
            rate = tokens_per_step * window.steps / max(window.seconds, 1e-9)
            train_metrics = {f"train/{k}": v for k, v in means.items()} | {
                "train/lr": scheduler.get_last_lr()[0],
                "train/grad_norm": float(grad_norm),
                "train/tokens_per_s": rate,
                "train/tokens": float(tokens_per_step * step),
                "train/peak_memory_gib": _peak_memory_gib(device),
            }
            last_report = train_metrics
            if logger is not None:
                logger.log_metrics(train_metrics, step)
            progress.update(step, means["loss"], rate, (total - step) * window.seconds / window.steps)
            window = _Window()

        if step % spec.eval.every == 0 or step == total:
            report = {"step": step, **last_report}
            if rank == 0:
                started = time.perf_counter()
                metrics, artifacts = evaluate(exp, ema if ema is not None else module, device, eval_seed)
                metrics["seconds"] = time.perf_counter() - started
                eval_metrics = {f"eval/{k}": v for k, v in metrics.items()}
                logger.log_metrics(eval_metrics, step)
                for name, text in artifacts.items():
                    logger.log_text(text, f"eval/step_{step:08d}/{name}")
                report |= eval_metrics
                progress.message(
                    f"step {step}: eval elbo {metrics['elbo']:.4f} nats/token, ppl {metrics['ppl']:.3f}"
                )
            ray.train.report(report)

        if step % spec.train.checkpoint_every == 0 or step == total:
            shared = None
            if rank == 0:
                shared = {
                    "model": module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "time_rng": time_generator.get_state(),
                    "step": step,
                    "ema": ema.state_dict() if ema is not None else None,
                    "spec_hash": resolved.hash,
                }
            own = {
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "python_rng": random.getstate(),
                "data": stream.state_dict(),
            }
            path = checkpoint.save(run_dir, step, rank, shared, own, _barrier)
            if logger is not None:
                logger.set_tags({TAG_CHECKPOINT: str(path)})
    progress.close()


def worker_config(**fields: Any) -> dict[str, Any]:
    """A :class:`WorkerConfig` as the plain dict Ray ships to workers."""
    return asdict(WorkerConfig(**fields))
