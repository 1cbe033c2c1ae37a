"""Answer metrics of generated chat replies: length, termination, role leakage, diversity.

distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all answers, pooled.
Repeated n-gram rate: per answer, the fraction of its n-grams that already occurred earlier in
the same answer (1 - its own distinct-n); the mean over answers with at least one n-gram.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def answers(tokens: torch.Tensor, start: torch.Tensor, stop_ids: Sequence[int]) -> tuple[list[list[int]], torch.Tensor]:
    """The answers of Long[N, L] rows whose answers begin at Long[N] ``start``: the ids up to
    (not including) the first stop id, and Bool[N] whether a stop id ended them."""
    out, terminated = [], []
    stops = set(stop_ids)
    for row, begin in zip(tokens.tolist(), start.tolist()):
        answer = row[begin:]
        end = next((i for i, token in enumerate(answer) if token in stops), None)
        out.append(answer if end is None else answer[:end])
        terminated.append(end is not None)
    return out, torch.tensor(terminated, dtype=torch.bool)


def _ngrams(sequence: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(sequence[i : i + n]) for i in range(len(sequence) - n + 1)]


def distinct_n(sequences: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / n-grams over all ``sequences`` (NaN when there is no n-gram)."""
    grams = [g for s in sequences for g in _ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_ngram_rate(sequences: Sequence[Sequence[int]], n: int) -> float:
    """Mean over sequences with an n-gram of (repeated n-gram occurrences / n-grams)."""
    rates = []
    for s in sequences:
        grams = _ngrams(s, n)
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else float("nan")


def quantile(values: Sequence[int], q: float) -> float:
    """The q-quantile (linear interpolation) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q))
