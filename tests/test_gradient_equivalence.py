"""One optimizer step of the training engine (``pipelines.train.optimizer_step``) on 2 real gloo
workers x 2 micro-batches equals one step of 1 process on the whole global batch: same data,
same t, same initial weights, SGD with lr 1 so the update is the averaged gradient itself.
Two broken variants run beside it and must differ from the reference, so the comparison
can fail: a loss not divided by the accumulation count, and ranks that never all-reduce."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import ray.cloudpickle
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from components.losses.base import LossOutput
from pipelines.train import optimizer_step

VOCAB, LENGTH, GLOBAL_BATCH, WORKERS, ACCUM = 11, 6, 8, 2, 2


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(VOCAB, 16), torch.nn.Tanh(), torch.nn.Linear(16, VOCAB))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """tokens: Long[GLOBAL_BATCH, LENGTH]; t: Float[GLOBAL_BATCH] (fixed draws)."""
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (GLOBAL_BATCH, LENGTH), generator=generator)
    return tokens, torch.rand(GLOBAL_BATCH, generator=generator)


def _objective(model: torch.nn.Module, tokens: torch.Tensor, t: torch.Tensor) -> LossOutput:
    """t-weighted next-token cross-entropy, mean over the micro-batch's positions."""
    logits = model(tokens[:, :-1])
    ce = F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1), reduction="none")
    per_position = t[:, None] * ce.view(tokens.shape[0], -1)
    return LossOutput(loss=per_position.mean(), elbo=per_position.detach())


def _step(model: torch.nn.Module, parts: list[tuple[torch.Tensor, torch.Tensor]], *, accum: int, world: int) -> dict:
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    optimizer_step(model, optimizer, iter(parts), _objective, accum=accum, world=world, clip=float("inf"),
                   autocast=nullcontext())
    module = getattr(model, "module", model)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _worker(config: dict) -> None:
    rank = ray.train.get_context().get_world_rank()
    tokens, t = _data()
    per_rank = GLOBAL_BATCH // WORKERS
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    micro = per_rank // ACCUM
    parts = [(tokens[mine][i * micro:(i + 1) * micro], t[mine][i * micro:(i + 1) * micro]) for i in range(ACCUM)]
    results = {
        "engine": _step(ray.train.torch.prepare_model(_model(), parallel_strategy="ddp"), parts, accum=ACCUM, world=WORKERS),
        # Broken on purpose: the loss of each micro-batch counts in full (a sum, not a mean).
        "unscaled": _step(ray.train.torch.prepare_model(_model(), parallel_strategy="ddp"), parts, accum=1, world=WORKERS),
        # Broken on purpose: every rank steps on its own gradient.
        "no_allreduce": _step(_model(), parts, accum=ACCUM, world=1),
    }
    torch.save(results, Path(config["out"]) / f"rank_{rank}.pt")


@pytest.mark.usefixtures("ray_cluster")
def test_two_workers_with_accumulation_take_the_full_batch_step(tmp_path: Path) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    TorchTrainer(
        _worker,
        train_loop_config={"out": str(tmp_path)},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="equivalence", storage_path=str(tmp_path / "ray")),
    ).fit()
    tokens, t = _data()
    reference = _step(_model(), [(tokens, t)], accum=1, world=1)
    initial = _model().state_dict()
    ranks = [torch.load(tmp_path / f"rank_{r}.pt", weights_only=True) for r in range(WORKERS)]

    def close(got: dict) -> bool:
        return all(torch.allclose(got[k], reference[k], rtol=0, atol=1e-6) for k in reference)

    assert any(not torch.equal(reference[k], initial[k]) for k in reference)  # the step moved the weights
    for rank in ranks:
        assert close(rank["engine"])
        assert not close(rank["unscaled"])
        assert not close(rank["no_allreduce"])
