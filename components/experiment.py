"""Assemble every component a spec declares (pure PyTorch; used by the pipelines and notebooks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from components import backbones, losses, noise, samplers, tasks
from components.backbones.base import Backbone
from components.losses.base import Loss
from components.noise.base import NoiseProcess
from components.samplers.base import Sampler
from components.schedules import TimeSampler, build_time
from components.spec.model import Spec
from components.tasks.base import Task


@dataclass
class Experiment:
    """The built components of one spec. ``model`` is on the CPU, in fp32, freshly initialised
    from ``spec.train.seed`` (identical on every rank)."""

    spec: Spec
    task: Task
    noise: NoiseProcess
    model: Backbone
    loss: Loss
    time: TimeSampler
    samplers: dict[str, Sampler]


def build_task(spec: Spec, cache_dir: Path) -> Task:
    return tasks.build(spec.task, cache_dir=cache_dir)


def check_buildable(spec: Spec, task: Task) -> None:
    """Build the cheap components (noise, loss, time sampler, samplers) so that a spec whose parts
    do not fit together fails before anything starts; raises ``BuildError``."""
    process = noise.build(spec.noise, vocab_size=task.vocab_size, mask_id=task.mask_id)
    losses.build(spec.loss, noise=process)
    build_time(spec.schedule.time)
    for cfg in spec.eval_samplers().values():
        samplers.build(cfg, stop_ids=task.stop_ids)


def build_experiment(spec: Spec, cache_dir: Path, task: Task | None = None) -> Experiment:
    """Build task (unless given), noise, backbone, loss, time sampler and the eval samplers."""
    task = task or build_task(spec, cache_dir)
    process = noise.build(spec.noise, vocab_size=task.vocab_size, mask_id=task.mask_id)
    torch.manual_seed(spec.train.seed)
    model = backbones.build(
        spec.backbone, vocab_size=task.vocab_size, seq_len=task.seq_len, structure=task.structure()
    )
    return Experiment(
        spec=spec,
        task=task,
        noise=process,
        model=model,
        loss=losses.build(spec.loss, noise=process),
        time=build_time(spec.schedule.time),
        samplers={name: samplers.build(cfg, stop_ids=task.stop_ids) for name, cfg in spec.eval_samplers().items()},
    )
