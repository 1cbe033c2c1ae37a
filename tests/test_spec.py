"""The spec language: validation messages name the YAML path and what is allowed; extends,
--set overrides, sweep checks and the content hash."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from components.spec import SpecError, load_spec, trial_spec, validate
from specs import TINY_SPEC, tiny_spec, write_spec


def _problems(path: Path, overrides: list[str] | None = None) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, overrides)
    return {p.path: p.message for p in caught.value.problems}


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_non_mapping_and_syntax_errors(tmp_path: Path) -> None:
    assert "file is empty" in _problems(_write(tmp_path, ""))[""]
    assert "mapping of sections, got list" in _problems(_write(tmp_path, "- a\n- b\n"))[""]
    message = _problems(_write(tmp_path, "name: x\ntask: {kind: sudoku\n"))[""]
    assert "YAML syntax error at line 3" in message


def test_unsafe_yaml_tags_are_rejected(tmp_path: Path) -> None:
    message = _problems(_write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"))[""]
    assert "unsupported YAML tag at line 1" in message and "python/object" in message


def test_every_field_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    spec = tiny_spec(
        noise={"kind": "gidd", "p_uniform": 1.5},
        train={"steps": 0, "precision": "fp8", "optimizr": {}},
        resources={"workers": -1},
    )
    spec["colour"] = "blue"
    spec["loss"] = {"kind": "elbo++"}
    problems = _problems(write_spec(tmp_path, spec))
    assert "less than 1" in problems["noise.p_uniform"]
    assert "greater than or equal to 1" in problems["train.steps"]
    assert "'fp32' or 'bf16'" in problems["train.precision"]
    assert problems["train.optimizr"].startswith("unknown field 'optimizr'; allowed: batch_size")
    assert "greater than or equal to 0" in problems["resources.workers"]
    assert problems["colour"].startswith("unknown field 'colour'; allowed:") and "tracking" in problems["colour"]
    assert problems["loss.kind"].startswith("unknown kind 'elbo++'; allowed: ") and "mdlm" in problems["loss.kind"]


def test_missing_sections_and_kinds(tmp_path: Path) -> None:
    spec = copy.deepcopy(TINY_SPEC)
    del spec["backbone"]
    spec["sampler"] = {"k": 3}
    problems = _problems(write_spec(tmp_path, spec))
    assert problems["backbone"] == "required field is missing"
    assert problems["sampler"] == "missing 'kind'"


def test_cross_section_rules_name_both_sections(tmp_path: Path) -> None:
    problems = _problems(write_spec(tmp_path, tiny_spec(noise={"kind": "uniform"})))
    assert "loss kind 'mdlm' needs noise kind masked, got 'uniform'" in problems[""]
    spec = tiny_spec(resources={"workers": 3})
    assert "train.batch_size 8 must be divisible by resources.workers 3" in _problems(write_spec(tmp_path, spec))[""]
    spec = tiny_spec(resources={"backend": "nccl"})
    assert "nccl" in _problems(write_spec(tmp_path, spec))["resources"]


CAUSAL = {"kind": "causal", "layers": 1, "heads": 2, "width": 16}


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"loss": {"kind": "ar"}}, "loss kind 'ar' needs backbone kind causal, got 'dit'"),
        ({"sampler": {"kind": "autoregressive"}}, "sampler kind 'autoregressive' needs backbone kind causal, got 'dit'"),
        ({"eval": {"samplers": {"ar": {"kind": "autoregressive"}}}}, "eval.samplers.ar kind 'autoregressive' needs backbone kind causal"),
        ({"loss": {"kind": "mixture", "terms": {"ar": {"weight": 0.3, "loss": {"kind": "ar"}}, "m": {"weight": 0.7, "loss": {"kind": "mdlm"}}}}},
         "loss kind 'mixture' needs backbone kind causal, got 'dit'"),
    ],
)
def test_causal_losses_and_samplers_need_the_causal_backbone(sections: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate(tiny_spec(**sections))
    assert message in caught.value.render()
    assert validate(tiny_spec(backbone=CAUSAL, **sections)).spec.backbone.kind == "causal"


def test_mixture_terms_with_no_backbone_in_common_are_rejected() -> None:
    loss = {"kind": "mixture", "terms": {"ar": {"weight": 1.0, "loss": {"kind": "ar"}}, "th": {"weight": 1.0, "loss": {"kind": "two_head"}}}}
    with pytest.raises(SpecError, match="backbone kinds with nothing in common"):
        validate(tiny_spec(noise={"kind": "uniform"}, loss=loss, backbone=CAUSAL))


def test_cli_validate_rejects_ar_on_the_dit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.cli import main

    path = write_spec(tmp_path, tiny_spec(loss={"kind": "ar"}, sampler={"kind": "autoregressive"}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "loss kind 'ar' needs backbone kind causal, got 'dit'" in err
    assert "sampler kind 'autoregressive' needs backbone kind causal" in err


def test_extends_merges_and_replaces_on_kind_change(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    write_spec(tmp_path / "base", TINY_SPEC, "tiny.yaml")
    child = _write(
        tmp_path,
        "extends: base/tiny.yaml\nname: child\nnoise: {kind: gidd, p_uniform: 0.2}\nloss: {kind: gidd}\n"
        "train: {steps: 50}\n",
    )
    spec = load_spec(child).spec
    assert spec.name == "child" and spec.train.steps == 50
    assert spec.train.batch_size == TINY_SPEC["train"]["batch_size"]  # merged, not replaced
    assert spec.noise.kind == "gidd" and spec.noise.p_uniform == 0.2  # masked's eps did not leak in


def test_extends_errors(tmp_path: Path) -> None:
    missing = _write(tmp_path, "extends: nowhere.yaml\nname: x\n")
    assert "file not found: nowhere.yaml" in _problems(missing)["extends"]
    _write(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    _write(tmp_path, "extends: a.yaml\nname: b\n", "b.yaml")
    assert "cycle in extends: a.yaml -> b.yaml -> a.yaml" in _problems(tmp_path / "a.yaml")["extends"]
    absolute = _write(tmp_path, f"extends: {tmp_path / 'a.yaml'}\nname: x\n", "abs.yaml")
    assert "must be relative" in _problems(absolute)["extends"]


def test_overrides_are_typed_by_the_schema(tmp_path: Path) -> None:
    path = write_spec(tmp_path, TINY_SPEC)
    spec = load_spec(
        path,
        ["name=123", "train.steps=7", "train.optimizer.betas=[0.9, 0.95]", "train.grad_clip=null",
         "noise.eps=1e-4", "train.storage=2024", "eval.puzzles=held_out.csv"],
    ).spec
    assert spec.name == "123" and spec.train.steps == 7 and spec.train.optimizer.betas == (0.9, 0.95)
    assert spec.train.grad_clip is None and spec.noise.eps == 1e-4 and spec.train.storage == "2024"
    assert spec.eval.data == Path("held_out.csv")  # `puzzles` is an alias of eval.data
    assert "greater than or equal to 1" in _problems(path, ["train.steps=0"])["train.steps"]
    assert "expected dotted.path=value" in _problems(path, ["train.steps"])[""]


def test_sweep_paths_and_values_are_checked(tmp_path: Path) -> None:
    spec = tiny_spec(
        noise={"kind": "gidd", "p_uniform": 0.1},
        loss={"kind": "gidd"},
        sweep={
            "metric": "eval/elbo",
            "mode": "min",
            "space": {
                "noise.p_uniform": {"grid": [0.0, 0.4, 1.5]},
                "noise.p_unifrom": {"grid": [0.1]},
                "train.optimizer.weight_decay": {"loguniform": [1.0e-4, 2.0]},
            },
        },
    )
    problems = _problems(write_spec(tmp_path, spec))
    assert "value 1.5 is not allowed" in problems["sweep.space.noise.p_uniform"]
    assert "is not a field of this spec" in problems["sweep.space.noise.p_unifrom"]
    assert "value 2.0 is not allowed" in problems["sweep.space.train.optimizer.weight_decay"]
    spec["sweep"]["space"] = {"noise.p_uniform": {"grid": [0.1], "uniform": [0.0, 0.5]}}
    assert "exactly one of" in _problems(write_spec(tmp_path, spec))["sweep.space.noise.p_uniform"]


def test_hash_is_sha256_of_canonical_json_and_ignores_key_order(tmp_path: Path) -> None:
    resolved = load_spec(write_spec(tmp_path, TINY_SPEC))
    canonical = json.dumps(resolved.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert resolved.hash == hashlib.sha256(canonical.encode()).hexdigest()
    shuffled = {k: TINY_SPEC[k] for k in reversed(list(TINY_SPEC))}
    assert load_spec(write_spec(tmp_path, shuffled, "shuffled.yaml")).hash == resolved.hash
    with_defaults = copy.deepcopy(TINY_SPEC)
    with_defaults["train"]["seed"] = 0  # the default, written out: same resolved spec
    assert load_spec(write_spec(tmp_path, with_defaults, "defaults.yaml")).hash == resolved.hash
    changed = load_spec(write_spec(tmp_path, TINY_SPEC), ["train.seed=1"])
    assert changed.hash != resolved.hash


def test_trial_spec_applies_values_and_drops_the_sweep(tmp_path: Path) -> None:
    spec = tiny_spec(sweep={"metric": "eval/elbo", "mode": "min", "space": {"train.seed": {"grid": [0, 1]}}})
    base = load_spec(write_spec(tmp_path, spec))
    trial = trial_spec(base, {"train.seed": 1, "noise": {"kind": "gidd", "p_uniform": 0.2}, "loss": {"kind": "gidd"}})
    assert trial.spec.sweep is None and trial.spec.train.seed == 1 and trial.spec.noise.kind == "gidd"
    assert trial.hash == validate(yaml.safe_load(trial.to_yaml())).hash
