"""Training progress on rank 0: a live bar on a terminal, plain lines in logs and Ray workers."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _fmt_rate(tokens_per_s: float) -> str:
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.2f}M tok/s"
    if tokens_per_s >= 1e3:
        return f"{tokens_per_s / 1e3:.1f}k tok/s"
    return f"{tokens_per_s:.0f} tok/s"


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class TrainingProgress:
    """Shows step / total, loss, tokens/s and ETA. ``enabled=False`` on ranks other than 0."""

    def __init__(self, name: str, total_steps: int, start_step: int, enabled: bool):
        self.enabled = enabled
        self.total = total_steps
        self.name = name
        self._bar: Progress | None = None
        self._task = None
        self._last_line = 0.0
        if enabled and sys.stdout.isatty():
            self._bar = Progress(
                TextColumn(f"[bold]{name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=Console(),
                transient=False,
            )
            self._task = self._bar.add_task(name, total=total_steps, completed=start_step, status="")
            self._bar.start()

    def update(self, step: int, loss: float, tokens_per_s: float, eta_s: float) -> None:
        if not self.enabled:
            return
        status = f"loss {loss:.4f} | {_fmt_rate(tokens_per_s)}"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, status=status)
            return
        now = time.monotonic()
        if now - self._last_line >= 5.0 or step == self.total:
            self._last_line = now
            print(f"[{self.name}] step {step}/{self.total} | {status} | ETA {_fmt_eta(eta_s)}", flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(f"[{self.name}] {text}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
