"""The sweep's console: one line per trial event, tagged with the trial's short name, and a
sweep-level status line (done / running / pending, best so far, ETA) after each of them.

Lines look like::

    trial 2 kind=gidd: started
    trial 2 kind=gidd: step 600 eval/easy/k1/puzzle_accuracy=0.912
    trial 2 kind=gidd: finished, eval/easy/k1/puzzle_accuracy=0.912 (41 s)
    sweep: 2/2 done, 0 running, 0 pending | best 0.912 (trial 2 kind=gidd) | ETA 0m00s
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback

from pipelines.progress import _fmt_eta
from pipelines.sweep import Trial


def trial_name(trial: Any) -> str:
    """The short name of a Tune trial from its ``trial`` config entry."""
    entry = trial.config["trial"]
    index = entry["index"] or int(trial.trial_id.rsplit("_", 1)[-1]) + 1
    return Trial(index, entry["assign"]).name


class SweepConsole(Callback):
    def __init__(self, metric: str, mode: str, total: int | None):
        self.metric, self.mode, self.total = metric, mode, total
        self._started: dict[str, float] = {}
        self._durations: list[float] = []
        self._best: tuple[float, str] | None = None
        self._t0 = time.monotonic()

    def _line(self, trial: Any, text: str) -> None:
        print(f"{trial_name(trial)}: {text}", flush=True)

    def _status(self, trials: list[Any]) -> None:
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        total = self.total or len(trials)
        pending = max(0, total - done - running)
        best = f"best {self._best[0]:.4g} ({self._best[1]})" if self._best else "best -"
        if self._durations and running + pending:
            per_trial = sum(self._durations) / len(self._durations)
            at_once = max(1, running)
            eta = _fmt_eta(per_trial * math.ceil(pending / at_once) + per_trial / 2 * (running > 0))
        else:
            eta = "-" if running + pending else _fmt_eta(0)
        print(f"sweep: {done}/{total} done, {running} running, {pending} pending | {best} | ETA {eta}", flush=True)

    def _consider(self, trial: Any, result: dict[str, Any]) -> None:
        value = result.get(self.metric)
        if value is None:
            return
        better = self._best is None or (value > self._best[0] if self.mode == "max" else value < self._best[0])
        if better:
            self._best = (float(value), trial_name(trial))

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._started[trial.trial_id] = time.monotonic()
        self._line(trial, "started")
        self._status(trials)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        if self.metric in result:
            self._line(trial, f"step {result.get('step', '?')} {self.metric}={result[self.metric]:.4g}")
            self._consider(trial, result)

    def _ended(self, trials: list[Any], trial: Any, text: str) -> None:
        elapsed = time.monotonic() - self._started.get(trial.trial_id, self._t0)
        self._durations.append(elapsed)
        self._line(trial, f"{text} ({elapsed:.0f} s)")
        self._status(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        value = (trial.last_result or {}).get(self.metric)
        shown = f", {self.metric}={value:.4g}" if value is not None else ""
        stopped = " (stopped early by the scheduler)" if trial.last_result and not trial.last_result.get("done", True) else ""
        self._ended(trials, trial, f"finished{shown}{stopped}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        message = str(getattr(trial, "error_msg", "") or "").strip().splitlines()
        self._ended(trials, trial, f"failed: {message[-1] if message else 'see the MLflow run'}")
