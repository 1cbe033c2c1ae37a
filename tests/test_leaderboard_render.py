"""Leaderboard rendering: the terminal table stays readable, other formats keep every column."""

from __future__ import annotations

import polars as pl
import pytest

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


def test_seeds_of_one_configuration_group_into_mean_std_and_n() -> None:
    import statistics

    from pipelines.leaderboard import group_seeds

    values = {"a": [0.5, 0.7, 0.9], "b": [0.8, None]}  # b's second seed failed before evaluating
    rows = [(cfg, seed, v) for cfg, vs in values.items() for seed, v in enumerate(vs)]
    frame = pl.DataFrame(
        {
            "run": [f"trial {i + 1} wd={cfg} seed={seed}" for i, (cfg, seed, _) in enumerate(rows)],
            "status": ["FINISHED"] * 4 + ["FAILED"],
            "train.optimizer.weight_decay": [cfg for cfg, _, _ in rows],
            "train.seed": [str(seed) for _, seed, _ in rows],
            "eval/acc": [v for _, _, v in rows],
            "run_id": [f"{i:032x}" for i in range(len(rows))],
        },
        schema_overrides={"eval/acc": pl.Float64},
    )
    grouped = group_seeds(frame, "eval/acc", "max", best_seed=True)
    assert grouped["config"].to_list() == ["wd=b", "wd=a"]  # best mean first: 0.8 > 0.7
    b, a = grouped.row(0, named=True), grouped.row(1, named=True)
    assert a["n"] == 3 and a["eval/acc"] == pytest.approx(statistics.mean(values["a"]))
    assert a["eval/acc std"] == pytest.approx(statistics.stdev(values["a"]))
    assert a["best_seed"] == "2" and a["best eval/acc"] == 0.9
    assert b["n"] == 1 and b["status"] == "FAILED/FINISHED" and b["eval/acc std"] is None
    for fmt in ("csv", "md", "table", "json"):
        text = render(grouped, fmt, "exp")
        assert "eval/acc std" in text and "best_seed" in text
