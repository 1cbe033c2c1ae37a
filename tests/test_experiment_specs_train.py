"""Every spec under experiments/ trains 2 optimizer steps through ``difflab run`` at a shrunk size.

:func:`shrink` keeps a spec's structure — task kind, noise, loss, backbone kind, eval samplers
and their kinds, precision, EMA, micro-batching (gradient accumulation 2 where the spec
accumulates) and distributed training (2 gloo workers where the spec asks for several, 1 Train
worker where it asks for one) — and shrinks what costs time: model size, batch, puzzles, eval
sizes, sampler steps. Hub data becomes the local stories (text) or synthetic conversations (chat)
with a trained tokenizer, and a hub checkpoint a tiny random config of its family (no network here). Each run must end FINISHED with a checkpoint at step 2 and finite losses.

The default suite trains every local spec (workers: 0, about 1-3 s each) once per structure, and
one distributed one, text/owt-mdlm-small.yaml (2 gloo workers x gradient accumulation 2, bf16;
EMA on Train workers is covered by tests/test_training_matrix.py). ``-m slow`` trains the other
distributed specs too: each costs 12-20 s of Train worker start-up on the 2-core machine,
together ~3 minutes.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from components.spec.loading import read_with_extends
from pipelines.cli import main
from test_experiment_specs import SPECS, _id

REPO = Path(__file__).resolve().parents[1]
STORIES = REPO / "experiments" / "text" / "data" / "stories.txt"
CHATS = REPO / "experiments" / "chat" / "data" / "chats.jsonl"
SIZE = {"layers": 1, "heads": 2, "width": 32}


def _shrink_backbone(backbone: dict[str, Any]) -> dict[str, Any]:
    if backbone["kind"] == "hf":  # a hub checkpoint becomes a tiny random config of its family
        config = {"model_type": "modernbert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "max_position_embeddings": 64, "global_attn_every_n_layers": 1}
        return {k: v for k, v in backbone.items() if k not in ("pretrained", "revision")} | {"config": config}
    if "trunk" in backbone:  # a wrapper (two-head): its trunk carries the sizes
        return {**backbone, "trunk": _shrink_backbone(backbone["trunk"])}
    out = {k: v for k, v in backbone.items() if k != "size"}
    out.update(SIZE)
    if "ffn" in out:
        out["ffn"] = 64
    if out["kind"] == "dit" or "cond_dim" in out:
        out["cond_dim"] = 16
    return out


def _shrink_sampler(sampler: dict[str, Any]) -> dict[str, Any]:
    out = dict(sampler)
    if "steps" in out:
        out["steps"] = 4
    return out


def shrink(data: dict[str, Any]) -> dict[str, Any]:
    """The spec mapping (extends merged) at test size, structure kept; see the module docstring."""
    spec = copy.deepcopy(data)
    task = spec["task"]
    if task["kind"] == "sudoku":
        task.update(train_puzzles=64, eval_puzzles=4)
    elif task["kind"] == "chat":
        task.update(source={"path": str(CHATS)}, max_conversations=120, validation={"last_documents": 20}, seq_len=64)
        task["tokenizer"] = {"train": {"vocab_size": 300}}
    else:
        task.update(source={"path": str(STORIES)}, validation={"last_documents": 20}, seq_len=32, num_proc=1)
        task["tokenizer"] = {"train": {"vocab_size": 300}}
        if "judge" in task:  # the judge is another run, trained separately: not part of this structure
            del task["judge"]
    spec["backbone"] = _shrink_backbone(spec["backbone"])
    if "sampler" in spec:
        spec["sampler"] = _shrink_sampler(spec["sampler"])
    resources = spec.setdefault("resources", {})
    train = spec["train"]
    per_worker = train.get("batch_size", 64) // max(resources.get("workers", 0), 1)
    accumulates = train.get("micro_batch_size") not in (None, per_worker)
    workers = min(resources.get("workers", 0), 2)
    resources.update(workers=workers, cpus_per_worker=1, gpus_per_worker=0)
    batch = 8
    train.update(steps=2, batch_size=batch, log_every=1, checkpoint_every=2)
    train.pop("micro_batch_size", None)
    if accumulates:
        train["micro_batch_size"] = batch // max(workers, 1) // 2
    schedule = spec.setdefault("schedule", {})
    if "lr" in schedule:
        schedule["lr"] = {**schedule["lr"], "warmup_steps": 1}
    ev = spec.setdefault("eval", {})
    ev.update(every=2, batches=1, batch_size=4, num_samples=4)
    if "samplers" in ev:
        ev["samplers"] = {name: _shrink_sampler(s) for name, s in ev["samplers"].items()}
    spec["tracking"] = {"experiment": "specs-shrunk"}
    return spec


def _structure(spec: dict[str, Any]) -> str:
    """What a shrunk spec is, hyperparameter values aside: kinds, flags and worker class."""
    train = spec["train"]
    samplers = sorted({s["kind"] for s in spec.get("eval", {}).get("samplers", {}).values()})
    return repr((spec["task"]["kind"], spec["noise"]["kind"], spec["loss"]["kind"], spec["backbone"]["kind"],
                 spec["resources"]["workers"], "micro_batch_size" in train, train.get("precision", "fp32"),
                 train.get("ema") is not None, train.get("compile", False), samplers))


DEFAULT_DISTRIBUTED = {"text/owt-mdlm-small.yaml"}  # 2 gloo workers x accumulation 2, bf16


def _params() -> list[Any]:
    seen: set[str] = set()
    params = []
    for path in SPECS:
        spec = shrink(read_with_extends(path))
        key = _structure(spec)
        distributed = spec["resources"]["workers"] > 0
        slow = key in seen or (distributed and _id(path) not in DEFAULT_DISTRIBUTED)
        seen.add(key)
        params.append(pytest.param(path, id=_id(path), marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("path", _params())
def test_spec_trains_two_steps_shrunk(path: Path, workdir: Path, ray_cluster, capsys: pytest.CaptureFixture) -> None:
    shrunk = shrink(read_with_extends(path))
    spec_path = workdir / f"{path.stem}.yaml"
    spec_path.write_text(yaml.safe_dump(shrunk, sort_keys=False))
    (workdir / "experiments").symlink_to(REPO / "experiments")  # relative paths inside specs (GDDS kernels)

    code = main(["run", str(spec_path)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err

    client = MlflowClient("sqlite:///mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "specs-shrunk"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2]
    assert all(math.isfinite(m.value) for m in losses)
    assert any(k.startswith("eval/") for k in run.data.metrics), sorted(run.data.metrics)
    assert [p.name for p in (workdir / "runs").glob("*/step_*")] == ["step_00000002"]
