"""Rendering grids and evaluation examples as text, markdown and HTML.

In examples the prediction is shown next to the puzzle and the solution; a wrong or missing
prediction is marked ``[d]`` (``[?]`` when the model left no digit) in text and red in HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass


def _rows(cells: Sequence[str], size: int) -> list[str]:
    """Lay out n*n pre-formatted 3-character cells with box separators."""
    box = math.isqrt(size)
    lines = []
    for r in range(size):
        if r and r % box == 0:
            lines.append("+".join(["-" * (3 * box)] * box))
        row = cells[r * size : (r + 1) * size]
        lines.append("|".join("".join(row[b * box : (b + 1) * box]) for b in range(box)))
    return lines


def grid_text(digits: Sequence[int], size: int) -> str:
    """A digit grid (0 = blank, shown ``.``) as n text lines with box separators."""
    return "\n".join(_rows([f" {d or '.'} " for d in digits], size))


@dataclass(frozen=True)
class Example:
    """One evaluated puzzle: digit lists of n*n (prediction 0 = no digit)."""

    title: str
    puzzle: Sequence[int]
    prediction: Sequence[int]
    solution: Sequence[int]

    def wrong(self) -> list[bool]:
        """Per cell: the prediction differs from the solution (givens included)."""
        return [p != s for p, s in zip(self.prediction, self.solution)]


def example_text(example: Example, size: int) -> str:
    """Title line, then puzzle | prediction (errors in brackets) | solution side by side."""
    pred = [
        f"[{p or '?'}]" if bad else f" {p} " for p, bad in zip(example.prediction, example.wrong())
    ]
    grids = [
        _rows([f" {d or '.'} " for d in example.puzzle], size),
        _rows(pred, size),
        _rows([f" {d} " for d in example.solution], size),
    ]
    width = len(grids[0][0])
    header = "   ".join(name.ljust(width) for name in ("puzzle", "prediction", "solution"))
    body = ["   ".join(parts) for parts in zip(*grids)]
    return "\n".join([example.title, header, *body])


def examples_markdown(examples: Sequence[Example], size: int) -> str:
    """Markdown document: one fenced text block per example."""
    parts = ["# Sudoku examples", "", "Errors are bracketed: `[d]` wrong digit, `[?]` no digit.", ""]
    for ex in examples:
        parts += [f"## {ex.title}", "", "```", example_text(ex, size), "```", ""]
    return "\n".join(parts)


_STYLE = """
body { font-family: sans-serif; }
table.grid { border-collapse: collapse; margin: 4px 16px 16px 0; display: inline-table; }
table.grid td { width: 1.6em; height: 1.6em; text-align: center; border: 1px solid #ccc;
  font-family: monospace; }
td.given { font-weight: bold; background: #eee; }
td.wrong { background: #f4a6a6; color: #900; font-weight: bold; }
td.right { color: #060; }
td.bl { border-left: 2px solid #000; } td.bt { border-top: 2px solid #000; }
"""


def _grid_html(digits: Sequence[int], classes: Sequence[str], size: int) -> str:
    box = math.isqrt(size)
    rows = []
    for r in range(size):
        cells = []
        for c in range(size):
            i = r * size + c
            edge = (" bl" if c % box == 0 else "") + (" bt" if r % box == 0 else "")
            text = html.escape(str(digits[i])) if digits[i] else "&nbsp;"
            cells.append(f'<td class="{classes[i]}{edge}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="grid">' + "".join(rows) + "</table>"


def examples_html(examples: Sequence[Example], size: int) -> str:
    """Standalone HTML page: per example the puzzle, the prediction (givens grey, errors red,
    correct fills green) and the solution."""
    body = []
    for ex in examples:
        given = ["given" if d else "" for d in ex.puzzle]
        pred_classes = [
            "wrong" if bad else ("given" if g else "right") for bad, g in zip(ex.wrong(), ex.puzzle)
        ]
        body.append(f"<h2>{html.escape(ex.title)}</h2>")
        body.append(_grid_html(ex.puzzle, given, size))
        body.append(_grid_html(ex.prediction, pred_classes, size))
        body.append(_grid_html(ex.solution, given, size))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sudoku examples</title>"
        f"<style>{_STYLE}</style></head><body><h1>Sudoku examples</h1>"
        "<p>Puzzle, prediction (errors red), solution.</p>" + "\n".join(body) + "</body></html>"
    )
