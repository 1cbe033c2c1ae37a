"""One minimal example section for every registered kind of every family, and the helpers the
contract tests share (import as ``from contract_examples import ...``).

Sizes: vocabulary V = 6 with the mask token at id 2, sequence length L = 8, batch B = 4. A kind
added to a registry without an entry in :data:`EXAMPLES` fails ``test_registry_kinds``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

import torch

import components
from components.registry import Registry
from components.spec import SpecError, validate
from specs import tiny_spec

V, MASK, L, B = 6, 2, 8, 4
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
STORIES = EXPERIMENTS / "text" / "data" / "stories.txt"
CHATS = EXPERIMENTS / "chat" / "data" / "chats.jsonl"
TINY_DIT = {"kind": "dit", "layers": 1, "heads": 2, "width": 16, "cond_dim": 8}

EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "noise": {
        "masked": {"kind": "masked"},
        "uniform": {"kind": "uniform"},
        "gidd": {"kind": "gidd", "p_uniform": 0.2},
        "gdds": {"kind": "gdds", "kernel": {"kind": "uniform"}},
        "edit": {"kind": "edit", "edit_from": 0.0, "substitution": 0.2, "substitution_schedule": "linear"},
    },
    "losses": {
        "mdlm": {"kind": "mdlm"},
        "gidd": {"kind": "gidd"},
        "x0_ce": {"kind": "x0_ce"},
        "ar": {"kind": "ar"},
        "edit": {"kind": "edit"},
        "snapshot": {"kind": "snapshot"},
        "two_head": {"kind": "two_head"},
        "mixture": {
            "kind": "mixture",
            "terms": {"ar": {"weight": 0.3, "loss": {"kind": "ar"}}, "mdlm": {"weight": 0.7, "loss": {"kind": "mdlm"}}},
        },
    },
    "samplers": {
        "ancestral": {"kind": "ancestral", "steps": 4},
        "confidence": {"kind": "confidence", "k": 3},
        "autoregressive": {"kind": "autoregressive"},
        "edit": {"kind": "edit"},
        "gated": {"kind": "gated"},
        "self_correction": {"kind": "self_correction", "base": {"kind": "confidence", "k": 4}, "max_iters": 3},
        "semi_ar": {"kind": "semi_ar", "block_length": 4, "inner": {"kind": "confidence", "k": 2}},
    },
    "backbones": {
        "dit": TINY_DIT,
        "encoder": {"kind": "encoder", "layers": 1, "heads": 2, "width": 16, "ffn": 32},
        "causal": {"kind": "causal", "layers": 1, "heads": 2, "width": 16},
        "hf": {"kind": "hf", "config": {"model_type": "bert", "hidden_size": 16, "intermediate_size": 32,
                                        "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16}},
        "two_head": {"kind": "two_head", "trunk": TINY_DIT},
    },
    "schedule.time": {
        "uniform": {"kind": "uniform"},
        "low_discrepancy": {"kind": "low_discrepancy"},
    },
    "tasks": {
        "sudoku": {"kind": "sudoku", "size": 4, "tier": "easy", "train_puzzles": 64, "eval_puzzles": 16, "workers": 1},
        "text": {"kind": "text", "source": {"path": str(STORIES)}, "validation": {"last_documents": 16},
                 "tokenizer": {"train": {"vocab_size": 300}}, "seq_len": L},
        "chat": {"kind": "chat", "source": {"path": str(CHATS)},
                 "validation": {"last_documents": 4}, "tokenizer": {"train": {"vocab_size": 300}}, "seq_len": L},
    },
}

# Where each family's section sits in a spec (a dotted path).
SPEC_SECTION = {"noise": "noise", "losses": "loss", "samplers": "sampler", "backbones": "backbone",
                "schedule.time": "schedule.time", "tasks": "task"}


@cache
def registries() -> dict[str, Registry]:
    """Every Registry defined in a ``components/<family>/registry.py``, keyed by its family name,
    with the family package imported so that all its kinds are registered."""
    found: dict[str, Registry] = {}
    for info in pkgutil.iter_modules(components.__path__):
        if not info.ispkg:
            continue
        importlib.import_module(f"components.{info.name}")
        try:
            module = importlib.import_module(f"components.{info.name}.registry")
        except ModuleNotFoundError:
            continue
        found.update({value.family: value for value in vars(module).values() if isinstance(value, Registry)})
    return found


def cases(family: str) -> list[str]:
    """The kinds of ``family`` in the table (parametrize ids)."""
    return list(EXAMPLES[family])


def spec_with(**sections: Any) -> dict[str, Any]:
    """The tiny Sudoku spec with whole sections replaced (``schedule.time`` goes under schedule)."""
    time = sections.pop("schedule.time", None)
    spec = tiny_spec(**{key: value for key, value in sections.items()})
    if time is not None:
        spec["schedule"] = {**spec["schedule"], "time": time}
    return spec


def is_valid(**sections: Any) -> bool:
    """Whether the Spec's own cross-section checks accept these sections together."""
    try:
        validate(spec_with(**sections))
    except SpecError:
        return False
    return True


@cache
def partners(family: str, kind: str) -> dict[str, str]:
    """The first noise, loss, backbone and sampler kinds (in table order, the kind itself held)
    that the Spec accepts together with ``family: kind``."""
    own = SPEC_SECTION[family]
    choices = {section: cases(fam) for fam, section in SPEC_SECTION.items() if section in ("noise", "loss", "backbone", "sampler")}
    choices[own] = [kind]
    for combo in product(*choices.values()):
        picked = dict(zip(choices, combo))
        sections = {section: EXAMPLES[fam][picked[section]] for fam, section in SPEC_SECTION.items() if section in picked}
        if is_valid(**sections):
            return picked
    raise AssertionError(f"no noise/loss/backbone/sampler the Spec accepts with {family} kind {kind!r}")


def scramble(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraw every all-zero parameter (zero-initialised output layers, adaLN gates) as N(0, 0.1^2),
    so that gradients and outputs depend on every weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def logits_of(output: Any) -> torch.Tensor:
    """The Float[B, L, V] logits of a backbone output (a tensor, or a tuple with ``.logits``)."""
    return output if isinstance(output, torch.Tensor) else output.logits


def clean_tokens(generator: torch.Generator, batch: int = B, length: int = L) -> torch.Tensor:
    """Long[batch, length] of non-mask tokens."""
    tokens = torch.randint(0, V - 1, (batch, length), generator=generator)
    return tokens + (tokens >= MASK).long()
