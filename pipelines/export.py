"""``difflab export RUN --format hf OUT_DIR`` and ``difflab sample --from OUT_DIR``.

An export is a Hugging Face-style folder that needs neither the tracking store nor the run's
checkpoints:

- ``spec.yaml``: the run's resolved spec;
- ``difflab.safetensors``: the backbone's weights (the EMA weights when the run kept them);
- ``tokenizer.json``: the task's tokenizer, special tokens included (text and chat tasks);
- ``config.json`` + ``model.safetensors``: for an ``hf`` backbone, the transformers model
  (``save_pretrained``), so ``AutoModelForMaskedLM.from_pretrained(OUT_DIR)`` loads it (without
  the optional time embedding, which only ``difflab.safetensors`` holds); for other backbones
  ``config.json`` describes the difflab backbone;
- ``README.md``: a model card with the run, its key metrics and the resolved spec.

Nothing is overwritten: the folder must not exist or be empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_model, save_model

from components.batch import Batch
from components.experiment import Experiment, build_experiment, build_task
from components.spec import SpecError, validate
from components.spec.errors import Problem
from pipelines.errors import UsageError
from pipelines.evaluate import load_run
from pipelines.launch import cache_dir

SPEC_FILE = "spec.yaml"
WEIGHTS_FILE = "difflab.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CARD_METRICS = ("eval/elbo", "eval/ppl", "eval/bits_per_token")


def _card(name: str, run_id: str, step: int, spec_hash: str, metrics: dict[str, float], spec_yaml: str, hf: bool) -> str:
    keys = [k for k in CARD_METRICS if k in metrics] + sorted(k for k in metrics if k.startswith("eval/") and k not in CARD_METRICS)
    rows = "\n".join(f"| `{k}` | {metrics[k]:.6g} |" for k in keys)
    load = (
        "```python\nfrom transformers import AutoModelForMaskedLM\nmodel = AutoModelForMaskedLM.from_pretrained(OUT_DIR)\n```\n"
        if hf
        else ""
    )
    return (
        f"---\nlibrary_name: difflab\ntags: [discrete-diffusion]\n---\n\n# {name}\n\n"
        f"A discrete diffusion model trained with difflab: MLflow run `{run_id}`, step {step}, spec hash "
        f"`{spec_hash}`.\n\nGenerate with `difflab sample --from OUT_DIR`.\n\n{load}\n"
        f"## Metrics (latest values)\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"## Spec\n\n```yaml\n{spec_yaml}```\n"
    )


def export_run(uri: str, run_id: str, out_dir: Path) -> list[Path]:
    """Write the export folder of ``run_id``'s newest checkpoint; returns the files written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"OUT_DIR {out_dir}: exists and is not an empty folder; export never overwrites, name a new folder")
    loaded = load_run(uri, run_id)
    exp = loaded.experiment
    model = loaded.model.to("cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_yaml = loaded.resolved.to_yaml()
    (out_dir / SPEC_FILE).write_text(spec_yaml)
    save_model(model, str(out_dir / WEIGHTS_FILE))
    tokenizer = getattr(exp.task, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save(out_dir / TOKENIZER_FILE)
    hf = exp.spec.backbone.kind == "hf"
    if hf:
        model.model.save_pretrained(out_dir)
    else:
        config = {
            "difflab_backbone": exp.spec.backbone.model_dump(mode="json"),
            "vocab_size": exp.task.vocab_size,
            "mask_id": exp.task.mask_id,
            "seq_len": exp.task.seq_len,
        }
        (out_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    metrics = loaded.client.get_run(run_id).data.metrics
    card = _card(exp.spec.name, run_id, loaded.step, loaded.resolved.hash, metrics, spec_yaml, hf)
    (out_dir / "README.md").write_text(card)
    return sorted(out_dir.iterdir())


def load_export(folder: Path) -> tuple[Experiment, torch.nn.Module, torch.device]:
    """The experiment and weights of an export folder. The task reads the exported tokenizer and
    an ``hf`` backbone the exported transformers model, so neither needs the hub; the task's data
    (for prompts) is prepared from its source as in a run."""
    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise UsageError(f"--from {folder}: not a difflab export (needs {SPEC_FILE} and {WEIGHTS_FILE}; see `difflab export`)")
    data = yaml.safe_load((folder / SPEC_FILE).read_text())
    if (folder / TOKENIZER_FILE).is_file():
        eos = data["task"]["tokenizer"].get("eos")
        data["task"]["tokenizer"] = {"file": str(folder / TOKENIZER_FILE), **({"eos": eos} if eos else {})}
    if data["backbone"]["kind"] == "hf":
        data["backbone"] = {**data["backbone"], "pretrained": str(folder), "revision": None, "config": None}
    resolved = validate(data, f"export {folder}")
    task = build_task(resolved.spec, cache_dir())
    try:
        task.prepare()
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--from {folder}: task ({resolved.spec.task.kind}): {err}") from None
    exp = build_experiment(resolved.spec, cache_dir(), task)
    load_model(exp.model, str(folder / WEIGHTS_FILE))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return exp, exp.model.to(device).eval(), device


def sample_export(folder: Path, n: int, steps: int | None, sampler: str | None) -> list[str]:
    """``n`` generations from an export folder, as ``difflab sample RUN`` makes them (unconditional,
    or completing ``n`` validation rows for conditional tasks); printed, not logged."""
    exp, model, device = load_export(folder)
    names = list(exp.samplers)
    chosen = sampler or names[0]
    if chosen not in exp.samplers:
        raise SpecError(f"export {folder}", [Problem("--sampler", f"unknown sampler {chosen!r}; this export has: {', '.join(names)}")])
    batch = next(iter(exp.task.eval_batches(n, 1)))
    batch = Batch(x0=batch.x0[:n], fixed=batch.fixed[:n], valid=None if batch.valid is None else batch.valid[:n]).to(device)
    with torch.no_grad():
        out = exp.samplers[chosen].generate(model, exp.noise, batch, steps)
    return [exp.task.decode(row) for row in out.tokens.cpu()]
