"""The ``mixture`` loss: a weighted sum of terms, each with its own pass on a shared backbone."""

from __future__ import annotations

import pytest
import torch

from components import backbones, losses, noise
from components.batch import Batch
from components.spec import SpecError
from components.spec.loading import apply_overrides, validate
from specs import tiny_spec

V, MASK, L = 13, 12, 10
MIXTURE = {
    "kind": "mixture",
    "terms": {"ar": {"weight": 0.3, "loss": {"kind": "ar"}}, "mdlm": {"weight": 0.7, "loss": {"kind": "mdlm"}}},
    "elbo": "mdlm",
}


def setup():
    process = noise.build({"kind": "masked"}, vocab_size=V, mask_id=MASK)
    torch.manual_seed(0)
    model = backbones.build({"kind": "causal", "layers": 2, "heads": 2, "width": 16}, vocab_size=V, seq_len=L)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    x0 = torch.randint(0, MASK, (4, L))
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:, 0] = True
    return process, model, Batch(x0=x0, fixed=fixed), torch.tensor([0.2, 0.4, 0.6, 0.8])


def test_mixture_is_the_weighted_sum_of_its_terms_computed_separately() -> None:
    process, model, batch, t = setup()
    mixture = losses.build(MIXTURE, noise=process)
    torch.manual_seed(5)
    out = mixture.objective(model, batch, t)
    out.loss.backward()
    mixed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    ar = losses.build({"kind": "ar"}, noise=process)
    mdlm = losses.build({"kind": "mdlm"}, noise=process)
    torch.manual_seed(5)  # same RNG stream: the ar term draws nothing, mdlm draws z_t
    ar_out = ar.objective(model, batch, t)
    mdlm_out = mdlm.objective(model, batch, t)
    expected = 0.3 * ar_out.loss + 0.7 * mdlm_out.loss
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert torch.equal(out.elbo, mdlm_out.elbo)  # the named term's ELBO
    assert float(out.metrics["elbo"]) == pytest.approx(float(mdlm_out.metrics["elbo"]), rel=1e-6)
    assert float(out.metrics["ar/loss"]) == pytest.approx(float(ar_out.loss))
    assert float(out.metrics["ar/elbo"]) == pytest.approx(float(ar_out.metrics["elbo"]))
    assert float(out.metrics["mdlm/ce"]) == pytest.approx(float(mdlm_out.metrics["ce"]))
    expected.backward()
    for got, want in zip(mixed_grads, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, atol=1e-6)


def test_terms_run_their_own_passes() -> None:
    """The ar term calls the backbone causally on shifted clean tokens, mdlm bidirectionally on z_t."""
    process, model, batch, t = setup()
    calls = []

    def spy(module, args, kwargs):
        calls.append((args[0].clone(), kwargs.get("causal", False)))

    handle = model.register_forward_pre_hook(spy, with_kwargs=True)
    losses.build(MIXTURE, noise=process).objective(model, batch, t)
    handle.remove()
    (ar_in, ar_causal), (mdlm_in, mdlm_causal) = calls
    assert ar_causal and not mdlm_causal
    assert (ar_in[:, 0] == MASK).all() and torch.equal(ar_in[:, 1:], batch.x0[:, :-1])
    assert (mdlm_in == MASK).any() and torch.equal(mdlm_in[:, 0], batch.x0[:, 0])  # fixed kept


def test_mixture_call_needs_the_objective() -> None:
    process, *_ = setup()
    with pytest.raises(NotImplementedError, match="objective"):
        losses.build(MIXTURE, noise=process)(torch.zeros(1, 2, V), torch.zeros(1, 2, dtype=torch.long), None, None)


def test_default_elbo_term_is_the_first() -> None:
    process, model, batch, t = setup()
    config = {**MIXTURE, "elbo": None}
    out = losses.build(config, noise=process).objective(model, batch, t)
    assert float(out.metrics["elbo"]) == pytest.approx(float(out.metrics["ar/elbo"]))


def spec_with(loss: dict, **sections) -> dict:
    return tiny_spec(loss=loss, backbone={"kind": "causal", "layers": 1, "heads": 2, "width": 16}, **sections)


def test_spec_validation() -> None:
    resolved = validate(spec_with(MIXTURE))
    again = validate(resolved.to_dict())
    assert again.hash == resolved.hash
    assert resolved.to_dict()["loss"]["terms"]["mdlm"]["loss"] == {"kind": "mdlm", "low_var": False}
    assert resolved.spec.loss.requires_noise == ("masked",)
    swept = apply_overrides(spec_with(MIXTURE), ["loss.terms.ar.weight=0.5"], "test")
    assert validate(swept).spec.loss.terms["ar"].weight == 0.5

    problems = {
        "uniform noise": (spec_with(MIXTURE, noise={"kind": "uniform"}), "needs noise kind masked"),
        "nested": (spec_with({"kind": "mixture", "terms": {"m": {"weight": 1.0, "loss": MIXTURE}}}), "another mixture"),
        "elbo name": (spec_with({**MIXTURE, "elbo": "gidd"}), "elbo names no term"),
        "unknown kind": (spec_with({"kind": "mixture", "terms": {"a": {"weight": 1.0, "loss": {"kind": "nope"}}}}), "unknown kind"),
        "weight": (spec_with({"kind": "mixture", "terms": {"a": {"weight": 0.0, "loss": {"kind": "ar"}}}}), "greater than 0"),
        "empty": (spec_with({"kind": "mixture", "terms": {}}), "at least 1"),
    }
    for label, (data, message) in problems.items():
        with pytest.raises(SpecError, match=message) as caught:
            validate(data)
        assert "loss" in caught.value.render(), label


def test_mixture_of_gidd_and_x0_ce_keeps_the_common_noise() -> None:
    loss = {"kind": "mixture", "terms": {"gidd": {"weight": 1.0, "loss": {"kind": "gidd"}}, "ce": {"weight": 0.1, "loss": {"kind": "x0_ce"}}}}
    resolved = validate(spec_with(loss, noise={"kind": "gidd", "p_uniform": 0.1}))
    assert set(resolved.spec.loss.requires_noise) == {"masked", "uniform", "gidd"}
