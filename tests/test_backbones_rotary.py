"""RoPE: the rotate-half implementation equals explicit 2x2 rotations and is relative."""

import torch

from components.backbones.rotary import apply_rotary, rotary_tables


def explicit_rotation(position: int, head_dim: int, base: float = 10_000.0) -> torch.Tensor:
    """Float64[head_dim, head_dim]: block rotation of channel pairs (i, i + head_dim/2)."""
    half = head_dim // 2
    rot = torch.zeros(head_dim, head_dim, dtype=torch.float64)
    for i in range(half):
        angle = torch.tensor(position * base ** (-2.0 * i / head_dim), dtype=torch.float64)
        c, s = torch.cos(angle), torch.sin(angle)
        rot[i, i], rot[i, i + half] = c, -s
        rot[i + half, i], rot[i + half, i + half] = s, c
    return rot


def test_apply_rotary_matches_explicit_rotation_matrices():
    head_dim, length = 8, 12
    cos, sin = rotary_tables(length, head_dim)
    x = torch.randn(length, head_dim, generator=torch.Generator().manual_seed(0))
    got = apply_rotary(x, cos, sin).double()
    want = torch.stack([explicit_rotation(m, head_dim) @ x[m].double() for m in range(length)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_rotated_scores_depend_on_offset_only():
    head_dim, length = 16, 32
    cos, sin = rotary_tables(length, head_dim)
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(head_dim, generator=gen), torch.randn(head_dim, generator=gen)
    q_at = apply_rotary(q.expand(length, head_dim), cos, sin)
    k_at = apply_rotary(k.expand(length, head_dim), cos, sin)
    scores = q_at @ k_at.T  # scores[m, n] = <R(m) q, R(n) k>
    for offset in (-5, 0, 3, 11):
        diagonal = torch.diagonal(scores, offset=offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 3)[0], atol=1e-3)


def test_position_zero_is_identity_and_norm_is_preserved():
    cos, sin = rotary_tables(5, 6)
    x = torch.randn(5, 6)
    y = apply_rotary(x, cos, sin)
    torch.testing.assert_close(y[0], x[0])
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
