"""Two-head holding/jump model (diffusion.md section 5) on a DiT or encoder trunk.

The trunk is built with one extra output channel (V + 1 outputs): the first V are the jump head's
logits, the last is the holding head's logit, both linear reads of the trunk's last hidden state.

- holding: h_i = sigmoid(holding_i) = P(z_t,i is corrupted), i.e. the probability that the token
  must change (1 - h_i is the probability of holding it). This follows issue 6 and makes the
  predicted gate "h > threshold" read directly.
- jump: j_i = softmax over the tokens other than z_t,i (z_t,i's logit is -inf), the clean token's
  distribution given that z_t,i is wrong.
- logits: log x_hat with x_hat_i = (1 - h_i) onehot(z_t,i) + h_i j_i (disjoint supports), which
  plugs into any x_hat-based sampler; at a masked position (mask logit at -inf downstream) it is
  the jump distribution.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field

from components.backbones.base import Backbone
from components.backbones.dit import DiTConfig
from components.backbones.encoder import EncoderConfig
from components.backbones.registry import BACKBONES
from components.registry import SpecModel
from components.structure import Structure


class TwoHeadOutput(NamedTuple):
    """logits: Float32[B, L, V] log x_hat of the combined prediction; holding: Float32[B, L]
    logit of P(z_t,i corrupted); jump: Float32[B, L, V] jump logits with z_t,i at -inf."""

    logits: torch.Tensor
    holding: torch.Tensor
    jump: torch.Tensor


class TwoHeadConfig(SpecModel):
    """``backbone: {kind: two_head, trunk: {kind: dit, ...}}``."""

    kind: Literal["two_head"] = "two_head"
    trunk: Annotated[DiTConfig | EncoderConfig, Field(discriminator="kind")] = Field(
        description="the network the two heads read from (dit or encoder)"
    )

    # Only the two_head loss reads the named-tuple output (samplers use its ``logits`` field).
    requires_loss: ClassVar[tuple[str, ...]] = ("two_head",)


def combine(zt: torch.Tensor, holding: torch.Tensor, jump: torch.Tensor) -> torch.Tensor:
    """log((1 - h) onehot(zt) + h softmax(jump)) for zt: Long[B, L], holding: Float[B, L] logits,
    jump: Float[B, L, V] with -inf at zt. Returns Float32[B, L, V]."""
    log_jump = F.logsigmoid(holding)[..., None] + torch.log_softmax(jump, dim=-1)
    return log_jump.scatter(-1, zt[..., None], F.logsigmoid(-holding)[..., None])


@BACKBONES.register(TwoHeadConfig)
class TwoHead(Backbone):
    """forward(zt: Long[B, L], t: Float[B], fixed: Bool[B, L] | None, valid: Bool[B, L] | None)
    -> :class:`TwoHeadOutput`; see the module docstring."""

    def __init__(self, config: TwoHeadConfig, *, vocab_size: int, seq_len: int, structure: Structure | None = None):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.trunk = BACKBONES.build(config.trunk, vocab_size=vocab_size + 1, seq_len=seq_len, structure=structure)

    def forward(
        self,
        zt: torch.Tensor,
        t: torch.Tensor,
        fixed: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> TwoHeadOutput:
        out = self.trunk(zt, t, fixed=fixed, valid=valid).float()
        holding = out[..., self.vocab_size]
        jump = out[..., : self.vocab_size].scatter(-1, zt[..., None], float("-inf"))
        return TwoHeadOutput(logits=combine(zt, holding, jump), holding=holding, jump=jump)

    def flops_per_token(self, seq_len: int) -> float:
        """The trunk's training FLOPs per token for one pass (a gated two-head objective runs two)."""
        return self.trunk.flops_per_token(seq_len)
