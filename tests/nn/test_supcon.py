"""SupCon, the objective the paper does not have: equal to pytorch-metric-learning's SupConLoss
(an independent implementation) and to a float64 loop written from the formula."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss

from aclaudio import losses


def batch(seed: int, n: int = 12, dim: int = 6, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    return feats, labels


def formula(feats: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Khosla et al.'s L_out, anchor by anchor: -1/|P(i)| sum_p log(exp(s_ip / t) /
    sum_{a != i} exp(s_ia / t)), averaged over the anchors that have a positive."""
    u = torch.nn.functional.normalize(feats.double(), dim=1)
    per_anchor = []
    for i in range(len(u)):
        others = [a for a in range(len(u)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(u[i] @ u[a]) / temperature) for a in others)
        per_anchor.append(
            -sum(
                math.log(math.exp(float(u[i] @ u[p]) / temperature) / denominator)
                for p in positives
            )
            / len(positives)
        )
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_equals_the_formula_and_pytorch_metric_learning(seed, temperature):
    feats, labels = batch(seed)
    ours = losses.supcon(feats, labels, temperature=temperature)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(formula(feats, labels, temperature), rel=1e-10)
    a, b = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    reference = SupConLoss(temperature=temperature)(b, labels)
    losses.supcon(a, labels, temperature=temperature).backward()
    reference.backward()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-9)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-10)


def test_anchors_without_a_positive_do_not_count():
    feats, _ = batch(7, n=6)
    labels = torch.tensor([0, 0, 1, 2, 3, 4])  # only the first two have a positive
    assert losses.supcon(feats, labels).item() == pytest.approx(formula(feats, labels, 0.1))
    single = feats.clone().requires_grad_()
    none = losses.supcon(single, torch.arange(6))  # no two samples share a label
    none.backward()
    assert none.item() == 0 and torch.equal(single.grad, torch.zeros_like(single))


def test_the_objective_adds_cross_entropy_as_supervised_acl_does():
    g = torch.Generator().manual_seed(2)
    logits, feats = torch.randn(10, 3, generator=g), torch.randn(10, 5, generator=g)
    labels = torch.arange(10) % 3
    terms = losses.SupCon(alpha=0.4, temperature=0.2).terms(logits, feats, labels)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.equal(terms["cross_entropy"], 0.4 * ce)
    assert torch.equal(terms["supcon"], 0.6 * losses.supcon(feats, labels, temperature=0.2))
    assert torch.equal(losses.SupCon(alpha=1.0)(logits, feats, labels), ce)


def test_bad_input_is_a_clear_error():
    feats, labels = batch(0)
    with pytest.raises(ValueError, match="temperature must lie in"):
        losses.supcon(feats, labels, temperature=0.0)
    with pytest.raises(ValueError, match="labels must lie in"):
        losses.SupCon()(torch.randn(12, 3), feats.float(), labels + 5)
