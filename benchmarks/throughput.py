"""DiT throughput benchmark: training and sampling tokens/s, peak memory, MFU.

    python benchmarks/throughput.py --size tiny --batch 8 --seq-len 128 --steps 10 --device cpu
    python benchmarks/throughput.py --size small --batch 32 --seq-len 1024 --device cuda \
        --precision bf16 --compile --out benchmarks/results/throughput-h100.md

Training step: a self-contained masked-diffusion step (random tokens, t ~ U(0, 1) per sequence,
each position replaced by MASK with probability t, so about half of them; mean cross-entropy on
the masked positions; backward; AdamW step). Training tokens/s = batch * seq_len / step time.

Sampling: forward passes only (no gradients), on sequences that are fully MASK. One forward
pass denoises batch * seq_len positions; "forward tokens/s" = batch * seq_len / forward time.
A sampler with S steps needs S forward passes per sequence, so it generates
forward tokens/s / S finished tokens per second; that figure is reported for --sample-steps.

MFU = tokens/s * FLOPs/token / peak dense bf16 FLOP/s of the GPU (table below), with the
FLOPs/token of the backbone (6 N_matmul + 12 layers d L for training, a third of that for a
forward pass). Peak memory: torch.cuda.max_memory_allocated on GPU; the process's peak RSS
on CPU (it includes the Python runtime and torch itself).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from components.backbones import build
from components.backbones.base import Backbone

REPO = Path(__file__).resolve().parents[1]
# Peak dense bf16 tensor FLOP/s by GPU name (first substring match wins).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("A100", 312e12),
)


@dataclass(frozen=True)
class Result:
    """Measured numbers; seconds are per step / per forward pass, memory in bytes."""

    train_step_s: float
    train_tokens_per_s: float
    train_peak_bytes: int
    forward_s: float
    forward_tokens_per_s: float
    sample_peak_bytes: int


def peak_bf16_flops(device: torch.device) -> float | None:
    """Peak dense bf16 FLOP/s of a CUDA device from the table, None when unknown or CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"CPU {model}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"


def git_commit() -> str:
    """HEAD commit, marked when the files this benchmark measures have uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "components/backbones", "benchmarks/throughput.py")
    return f"{commit} (uncommitted changes in components/backbones or benchmarks)" if dirty else commit


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int:
    """CUDA max_memory_allocated, or the process's peak RSS on CPU (ru_maxrss is KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def masked_batch(batch: int, seq_len: int, vocab: int, device: torch.device, gen: torch.Generator):
    """Random masked-diffusion inputs: (x0, zt, t, masked); token vocab - 1 is MASK."""
    x0 = torch.randint(0, vocab - 1, (batch, seq_len), generator=gen).to(device)
    t = torch.rand(batch, generator=gen).to(device)
    masked = torch.rand(batch, seq_len, generator=gen).to(device) < t[:, None]
    zt = torch.where(masked, torch.full_like(x0, vocab - 1), x0)
    return x0, zt, t, masked


def measure(model: Backbone, args: argparse.Namespace, device: torch.device) -> Result:
    """Time ``args.steps`` training steps and forward passes, each after ``args.warmup``."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    forward = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-9, weight_decay=0.02)
    gen = torch.Generator().manual_seed(0)
    batches = [masked_batch(args.batch, args.seq_len, args.vocab, device, gen) for _ in range(4)]

    def train_step(i: int) -> None:
        x0, zt, t, masked = batches[i % len(batches)]
        with autocast:
            logits = forward(zt, t)
        loss = F.cross_entropy(logits[masked], x0[masked])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    reset_peak(device)
    for i in range(args.warmup):
        train_step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(args.steps):
        train_step(i)
    synchronize(device)
    train_s = (time.perf_counter() - start) / args.steps
    train_peak = peak_bytes(device)

    model.eval()
    zt = torch.full((args.batch, args.seq_len), args.vocab - 1, dtype=torch.long, device=device)
    t = torch.ones(args.batch, device=device)
    reset_peak(device)
    with torch.inference_mode(), autocast:
        for _ in range(args.warmup):
            forward(zt, t)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            forward(zt, t)
        synchronize(device)
    forward_s = (time.perf_counter() - start) / args.steps
    tokens = args.batch * args.seq_len
    return Result(train_s, tokens / train_s, train_peak, forward_s, tokens / forward_s, peak_bytes(device))


def report(model: Backbone, result: Result, args: argparse.Namespace, device: torch.device, load: tuple[float, float]) -> str:
    """The result as a markdown document."""
    flops = model.flops_per_token(args.seq_len)
    peak = peak_bf16_flops(device)
    memory = "CUDA max_memory_allocated" if device.type == "cuda" else "process peak RSS (includes Python + torch)"

    def mfu(tokens_per_s: float, flops_per_token: float) -> str:
        return "n/a (CPU or GPU not in the peak table)" if peak is None else f"{100 * tokens_per_s * flops_per_token / peak:.1f}%"

    generated = result.forward_tokens_per_s / args.sample_steps
    rows = [
        ("training tokens/s", f"{result.train_tokens_per_s:,.0f} ({1e3 * result.train_step_s:,.1f} ms/step)"),
        ("training achieved FLOP/s", f"{result.train_tokens_per_s * flops / 1e12:.3f} TFLOP/s"),
        ("training MFU (vs dense bf16 peak)", mfu(result.train_tokens_per_s, flops)),
        ("training peak memory", f"{result.train_peak_bytes / 2**20:,.0f} MiB"),
        ("sampling forward tokens/s", f"{result.forward_tokens_per_s:,.0f} ({1e3 * result.forward_s:,.1f} ms/forward)"),
        (f"sampling generated tokens/s at {args.sample_steps} steps", f"{generated:,.1f}"),
        ("sampling MFU (vs dense bf16 peak)", mfu(result.forward_tokens_per_s, flops / 3)),
        ("sampling peak memory", f"{result.sample_peak_bytes / 2**20:,.0f} MiB"),
    ]
    lines = [
        f"# Throughput: DiT {args.size}, {device.type}",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- device: {device_name(device)}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- git commit: {git_commit()}",
        f"- command: `python benchmarks/throughput.py {shlex.join(args.argv)}`",
        f"- model: {model.layers} layers, width {model.width}, {model.heads} heads, vocab {args.vocab} "
        f"(padded {model.padded_vocab}); {model.num_parameters():,} parameters without embeddings, "
        f"{model.num_parameters(exclude_embeddings=False):,} with",
        f"- batch {args.batch} x seq_len {args.seq_len} = {args.batch * args.seq_len:,} tokens per step; "
        f"precision {args.precision}; compile {args.compile}; {args.warmup} warmup + {args.steps} timed steps",
        f"- FLOPs/token (training, fwd+bwd): {flops / 1e9:.3f} GFLOP",
        f"- load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Training: masked-diffusion step (random tokens, t ~ U(0,1), ~half the positions masked, CE on",
        "masked positions, backward, AdamW). Sampling: forward passes only on all-MASK input;",
        "forward tokens/s counts batch x seq_len positions per forward pass; generated tokens/s",
        f"divides it by the {args.sample_steps} forward passes a sampler needs per sequence.",
    ]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "small", "base"], default="tiny")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--vocab", type=int, default=50258, help="vocabulary incl. MASK (GPT-2 + 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps / forward passes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, caches)")
    parser.add_argument("--sample-steps", type=int, default=None, help="sampler steps per sequence (default seq-len)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast, fp32 weights")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="free text added to the report (e.g. machine contention)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    for name in ("batch", "seq_len", "vocab", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    args.sample_steps = args.sample_steps or args.seq_len
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build({"kind": "dit", "size": args.size}, vocab_size=args.vocab, seq_len=args.seq_len).to(device)
    load_before = os.getloadavg()[0]
    result = measure(model, args, device)
    text = report(model, result, args, device, (load_before, os.getloadavg()[0]))
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
