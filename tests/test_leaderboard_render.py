"""Leaderboard rendering: the terminal table stays readable, other formats keep every column."""

from __future__ import annotations

import polars as pl

from pipelines.leaderboard import TABLE_PARAMS, render


def _frame(params: int) -> pl.DataFrame:
    rows = 3
    data: dict[str, list] = {"run": [f"r{i}" for i in range(rows)], "status": ["FINISHED"] * rows}
    for p in range(params):  # param p_k has k + 1 distinct values at most (capped by the rows)
        data[f"p{p}"] = [str(min(i, p)) for i in range(rows)]
    data["eval/elbo"] = [0.1, 0.2, 0.3]
    data["run_id"] = [f"{i:032x}" for i in range(rows)]
    return pl.DataFrame(data)


def test_table_keeps_the_most_varied_params_and_says_how_many_it_dropped() -> None:
    frame = _frame(TABLE_PARAMS + 2)
    text = render(frame, "table", "exp: eval/elbo (min)")
    assert "2 more varying params" in text
    header = text.splitlines()[:6]
    shown = [p for p in frame.columns if p.startswith("p") and any(f" {p} " in line for line in header)]
    assert len(shown) == TABLE_PARAMS and "p0" not in shown  # p0 has one value, the fewest
    csv = render(frame, "csv", "exp")
    assert csv.splitlines()[0].split(",") == frame.columns


def test_table_with_few_params_shows_them_all() -> None:
    frame = _frame(3)
    text = render(frame, "table", "exp: eval/elbo (min)")
    assert "more varying params" not in text
    assert all(f" p{k} " in text for k in range(3))
