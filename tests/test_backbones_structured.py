"""Structured positions and attention (a task's Structure read by the encoder and the DiT):
the Sudoku geometry against independent formulas, that peer attention really blocks
non-peers, state-dict round trips, and the errors for combinations that cannot work."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from components.backbones import build
from components.spec import SpecError, load_spec
from components.structure import Structure
from components.tasks.sudoku.task import SudokuConfig, SudokuTask

VOCAB, CELLS = 10, 81
STRUCTURED = {"positions": "structured", "attention": "structured"}
KINDS = {
    "encoder": {"kind": "encoder", "layers": 1, "heads": 4, "width": 32, "ffn": 64, "dropout": 0.0},
    "dit": {"kind": "dit", "layers": 1, "heads": 2, "width": 32, "cond_dim": 16},
}


def sudoku_structure(size: int = 9) -> Structure:
    return SudokuTask(SudokuConfig(size=size), cache_dir=Path("unused")).structure()


def make(kind: str, seed: int = 0, **options) -> torch.nn.Module:
    """A 1-layer model of ``kind``; every parameter is drawn at random (the DiT starts as an
    identity with zero output, which would hide what attention sees)."""
    torch.manual_seed(seed)
    model = build({**KINDS[kind], **options}, vocab_size=VOCAB, seq_len=CELLS, structure=sudoku_structure())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model.eval()


def test_sudoku_structure_matches_row_column_box_formulas():
    s = sudoku_structure()
    cells = torch.arange(CELLS)
    row, col = cells // 9, cells % 9
    box = (row // 3) * 3 + col // 3
    assert s.axis_sizes == (9, 9, 9)
    assert torch.equal(s.positions, torch.stack([row, col, box], dim=1))
    expected = (row[:, None] == row) | (col[:, None] == col) | (box[:, None] == box)
    assert torch.equal(s.attention, expected)
    assert (s.attention.sum(1) == 21).all()  # 20 peers + itself
    four = sudoku_structure(4)
    assert four.positions.shape == (16, 3) and (four.attention.sum(1) == 8).all()  # 7 peers + itself


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_padding(kind):
    model = make(kind, **STRUCTURED)
    zt = torch.randint(0, VOCAB, (3, CELLS))
    valid = torch.ones(3, CELLS, dtype=torch.bool)
    valid[1, 60:] = False
    valid[2] = False
    with torch.no_grad():
        out = model(zt, torch.rand(3), valid=valid)
        changed = model(torch.where(valid, zt, (zt + 1) % VOCAB), torch.rand(3).fill_(0.5), valid=valid)
        again = model(zt, torch.full((3,), 0.5), valid=valid)
    assert out.shape == (3, CELLS, VOCAB) and out.dtype == torch.float32 and out.isfinite().all()
    torch.testing.assert_close(changed[valid], again[valid])


@pytest.mark.parametrize("kind", KINDS)
def test_peer_attention_blocks_non_peers(kind):
    """Cell 0 (row 0, column 0, box 0): cell 40 (the centre) shares no unit with it, cell 8
    (row 0) and cell 20 (box 0) do. After one layer, changing the centre leaves cell 0's output
    unchanged; changing a peer changes it; with full attention the centre changes it too."""
    t = torch.full((2,), 0.5)
    zt = torch.randint(0, VOCAB, (2, CELLS), generator=torch.Generator().manual_seed(3))

    def cell0_after_changing(model, cell):
        changed = zt.clone()
        changed[:, cell] = (changed[:, cell] + 1) % VOCAB
        with torch.no_grad():
            return model(zt, t)[:, 0], model(changed, t)[:, 0]

    peers = make(kind, **STRUCTURED)
    torch.testing.assert_close(*cell0_after_changing(peers, 40), atol=0.0, rtol=0.0)
    for peer in (8, 20, 72):
        before, after = cell0_after_changing(peers, peer)
        assert (before - after).abs().max() > 1e-5, peer
    full = make(kind, positions="structured")
    before, after = cell0_after_changing(full, 40)
    assert (before - after).abs().max() > 1e-5


@pytest.mark.parametrize("kind", KINDS)
def test_structured_positions_tell_cells_apart_by_row_column_box(kind):
    """Structured positions without peer attention: swapping two cells' tokens of the same
    row changes the outputs at those cells (positions are embedded), and the embeddings are
    exactly three tables of 9 rows."""
    model = make(kind, positions="structured")
    tables = [emb.weight.shape for emb in model.pos_emb.axes]
    assert tables == [torch.Size([9, 32])] * 3
    zt = torch.randint(0, VOCAB, (1, CELLS), generator=torch.Generator().manual_seed(4))
    zt[0, 0], zt[0, 1] = 1, 2
    swapped = zt.clone()
    swapped[0, 0], swapped[0, 1] = 2, 1
    with torch.no_grad():
        a, b = model(zt, torch.full((1,), 0.5)), model(swapped, torch.full((1,), 0.5))
    assert (a[0, 0] - b[0, 1]).abs().max() > 1e-5


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind):
    source, target = make(kind, seed=0, **STRUCTURED), make(kind, seed=1, **STRUCTURED)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {f"pos_emb.axes.{a}.weight" for a in range(3)} <= set(state)
    assert not any(key.endswith(("allowed", "positions")) for key in state)  # rebuilt from the task
    zt, t = torch.randint(0, VOCAB, (2, CELLS)), torch.rand(2)
    with torch.no_grad():
        assert not torch.allclose(source(zt, t), target(zt, t))
        target.load_state_dict(state)
        torch.testing.assert_close(target(zt, t), source(zt, t), atol=0.0, rtol=0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_structured_options_without_a_structure_are_rejected(kind):
    with pytest.raises(ValueError, match="structure"):
        build({**KINDS[kind], "positions": "structured"}, vocab_size=VOCAB, seq_len=CELLS)
    plain = Structure.sequence(CELLS)
    with pytest.raises(ValueError, match="attention structure"):
        build({**KINDS[kind], "attention": "structured"}, vocab_size=VOCAB, seq_len=CELLS, structure=plain)
    model = build({**KINDS[kind], "positions": "structured"}, vocab_size=VOCAB, seq_len=CELLS, structure=plain)
    assert [emb.weight.shape[0] for emb in model.pos_emb.axes] == [CELLS]


def test_structure_rejects_inconsistent_tables():
    with pytest.raises(ValueError, match="axis"):
        Structure(torch.zeros(4, 2, dtype=torch.long), (4,))
    with pytest.raises(ValueError, match="itself"):
        Structure(torch.arange(4)[:, None], (4,), torch.zeros(4, 4, dtype=torch.bool))


def test_spec_rejects_peer_attention_on_a_text_task():
    path = Path(__file__).parents[1] / "experiments/text/local-mdlm.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(path, ["backbone.attention=structured"])
    messages = " ".join(p.message for p in caught.value.problems)
    assert "attention 'structured' needs a task that supplies an attention structure" in messages
    assert "'text'" in messages and "allowed: attention: full" in messages
    assert load_spec(path, ["backbone.positions=structured"]).spec.backbone.positions == "structured"
