"""Every spec under experiments/ validates and builds (no data generation, no training).

Fragments are skipped as specs: files under a ``base/``, ``kernels/`` or ``data/`` folder, and
files without a ``name`` (such as sudoku/recipe9.yaml), which must then be extended by a spec.
Backbones are built on the meta device, so paper-scale models cost no memory or init time.
Text and chat tasks whose tokenizer comes from the hub are built against a stand-in task with the
GPT-2 vocabulary (no network in CI); trained tokenizers are trained, once, on their local corpus
(chat tasks also build their small local examples). An ``hf`` backbone named by ``pretrained``
needs the hub for its config, so only its section is validated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from components import backbones
from components.experiment import build_task, check_buildable
from components.spec import load_spec, trial_spec
from components.structure import Structure
from components.tasks.chat.task import ChatTask
from components.tasks.text.task import TextTask

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
FRAGMENT_FOLDERS = {"base", "kernels", "data"}
GPT2_VOCAB = 50257 + 2  # GPT-2 (its <|endoftext|> is the eos) plus [PAD] and [MASK]


def _in_fragment_folder(path: Path) -> bool:
    return bool(FRAGMENT_FOLDERS & set(path.relative_to(EXPERIMENTS).parts[:-1]))


def _has_name(path: Path) -> bool:
    data = yaml.safe_load(path.read_text())
    return isinstance(data, dict) and "name" in data


YAMLS = sorted(p for p in EXPERIMENTS.rglob("*.y*ml") if not _in_fragment_folder(p))
SPECS = [p for p in YAMLS if _has_name(p)]
FRAGMENTS = [p for p in YAMLS if not _has_name(p)]


def _id(path: Path) -> str:
    return str(path.relative_to(EXPERIMENTS))


class _StandInTask:
    """vocab_size / mask_id / seq_len / stop_ids of a task whose tokenizer would come from the hub."""

    def __init__(self, seq_len: int):
        self.vocab_size = GPT2_VOCAB
        self.mask_id = GPT2_VOCAB - 1
        self.seq_len = seq_len
        self.stop_ids = (0,)

    def structure(self) -> Structure:
        return Structure.sequence(self.seq_len)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spec-cache")


def _task(spec, cache: Path):  # noqa: ANN001, ANN202 - Spec -> Task or stand-in
    task = build_task(spec, cache)
    if isinstance(task, TextTask):
        if getattr(spec.task.tokenizer, "hf", None):
            return _StandInTask(spec.task.seq_len)
        task.prepare_tokenizer()
    if isinstance(task, ChatTask):
        if getattr(spec.task.tokenizer, "hf", None):
            return _StandInTask(spec.task.seq_len)
        task.prepare()
    return task


def _build(spec, cache: Path) -> None:  # noqa: ANN001 - Spec
    """What build_experiment builds: noise, loss, time sampler and eval samplers for real
    (check_buildable), the backbone on the meta device."""
    task = _task(spec, cache)
    check_buildable(spec, task)
    if getattr(spec.backbone, "pretrained", None):
        return
    structure = task.structure()
    with torch.device("meta"):
        model = backbones.build(spec.backbone, vocab_size=task.vocab_size, seq_len=task.seq_len, structure=structure)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_specs_found() -> None:
    names = {_id(p) for p in SPECS}
    assert {"quickstart.yaml", "sudoku/4x4.yaml", "sudoku/masked.yaml", "sudoku/gidd.yaml"} <= names


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_spec_validates_and_builds(path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # specs name data files relative to the repository root
    resolved = load_spec(path)
    _build(resolved.spec, cache)
    sweep = resolved.spec.sweep
    if sweep is not None:  # every listed trial value builds too (validation only checks the spec)
        for dotted, dim in sweep.space.items():
            for value in dim.probe_values():
                _build(trial_spec(resolved, {dotted: value}).spec, cache)


@pytest.mark.parametrize("path", FRAGMENTS, ids=_id)
def test_fragment_is_extended_by_a_spec(path: Path) -> None:
    parents = set()
    for spec in SPECS:
        extends = yaml.safe_load(spec.read_text()).get("extends")
        if extends:
            parents.add((spec.parent / extends).resolve())
    assert path.resolve() in parents, f"{_id(path)} has no name and no spec extends it"
