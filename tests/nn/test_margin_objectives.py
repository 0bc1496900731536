"""The margin inside the softmax (NT-Xent with ArcFace's and CosFace's margins) and VICReg:
against float64 loops written from their formulas, pytorch-metric-learning's VICRegLoss (an
independent implementation), and their limits (m = 0 is NT-Xent)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import VICRegLoss

from aclaudio import losses


def views(seed: int, n: int = 6, dim: int = 5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, dim, generator=g, dtype=dtype) for _ in range(2))


def margin_formula(z1, z2, margin: float, kind: str, temperature: float) -> float:
    """Anchor by anchor over the 2N views: -log(exp(p / t) / (exp(p / t) + sum over the other
    2N - 2 views of exp(cos / t))), p = cos(theta + m) or cos(theta) - m of its partner."""
    u = F.normalize(torch.cat([z1, z2]).double(), dim=1).tolist()
    n, total = len(z1), 0.0
    for i, anchor in enumerate(u):
        j = (i + n) % (2 * n)
        cosines = {
            k: sum(a * b for a, b in zip(anchor, other, strict=True)) for k, other in enumerate(u)
        }
        theta = math.acos(max(-1.0, min(1.0, cosines[j])))
        p = math.cos(min(theta + margin, math.pi)) if kind == "angular" else cosines[j] - margin
        negatives = sum(math.exp(c / temperature) for k, c in cosines.items() if k not in (i, j))
        total += -math.log(math.exp(p / temperature) / (math.exp(p / temperature) + negatives))
    return total / (2 * n)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("kind", "margin"), [("angular", 0.1), ("angular", 0.5), ("cosine", 0.2)])
def test_margin_nt_xent_equals_its_formula(seed, kind, margin):
    z1, z2 = views(seed)
    ours = losses.margin_nt_xent(z1, z2, margin=margin, kind=kind, temperature=0.2)
    assert ours.item() == pytest.approx(margin_formula(z1, z2, margin, kind, 0.2), rel=1e-10)


@pytest.mark.parametrize("kind", ["angular", "cosine"])
def test_a_zero_margin_is_nt_xent_and_a_margin_raises_the_loss(kind):
    z1, z2 = views(3, n=16, dim=8)
    plain = losses.nt_xent(z1, z2, temperature=0.2)
    zero = losses.margin_nt_xent(z1, z2, margin=0.0, kind=kind, temperature=0.2)
    assert zero.item() == pytest.approx(plain.item(), rel=1e-12)
    assert losses.margin_nt_xent(z1, z2, margin=0.3, kind=kind).item() > plain.item()


def test_the_modules_are_the_function_and_coinciding_views_keep_finite_gradients():
    z = torch.randn(8, 16, dtype=torch.float32, requires_grad=True)
    arc = losses.ArcFaceNTXent(margin=0.2)(z, z)  # every positive pair at angle 0
    arc.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    z1, z2 = views(5)
    for module, kind in ((losses.ArcFaceNTXent, "angular"), (losses.CosFaceNTXent, "cosine")):
        expected = losses.margin_nt_xent(z1, z2, margin=0.3, kind=kind, temperature=0.1)
        got = module(margin=0.3, temperature=0.1)(z1, z2, z1, z2)
        assert got.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["angular", "cosine"])
def test_margin_gradients_pass_gradcheck(kind):
    z1, z2 = (x.requires_grad_() for x in views(6, n=4, dim=3))
    assert torch.autograd.gradcheck(
        lambda a, b: losses.margin_nt_xent(a, b, margin=0.3, kind=kind), (z1, z2)
    )


@pytest.mark.parametrize(
    "settings, message",
    [({"margin": -0.1, "kind": "angular"}, "margin"), ({"margin": 0.1, "kind": "arc"}, "kind")],
)
def test_bad_margin_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        losses.margin_nt_xent(*views(0), **settings)


def vicreg_formula(h1, h2, lam=25.0, mu=25.0, nu=1.0, eps=1e-4) -> float:
    """Bardes et al.'s terms as their code writes them, with loops over dimensions."""
    n, d = h1.shape
    invariance = float(((h1 - h2) ** 2).mean())
    variance = covariance = 0.0
    for h in (h1, h2):
        columns = [h[:, k].tolist() for k in range(d)]
        means = [sum(c) / n for c in columns]
        for k in range(d):
            var = sum((x - means[k]) ** 2 for x in columns[k]) / (n - 1)
            variance += max(0.0, 1 - math.sqrt(var + eps)) / (2 * d)
            for m in range(d):
                if m != k:
                    cov = sum(
                        (a - means[k]) * (b - means[m])
                        for a, b in zip(columns[k], columns[m], strict=True)
                    ) / (n - 1)
                    covariance += cov**2 / d
    return lam * invariance + mu * variance + nu * covariance


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [0.3, 2.0])  # below and above the variance hinge at std 1
def test_vicreg_equals_its_formula_and_pytorch_metric_learning(seed, scale):
    h1, h2 = (scale * x for x in views(seed, n=10, dim=6))
    ours = losses.vicreg(h1, h2)
    assert ours.item() == pytest.approx(vicreg_formula(h1, h2), rel=1e-10)
    a, b = (x.clone().requires_grad_() for x in (h1, h1))
    reference = VICRegLoss()(b, ref_emb=h2)
    losses.vicreg(a, h2).backward()
    reference.backward()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-9)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-10)


def test_vicreg_terms_are_weighted_and_named():
    h1, h2 = views(2, n=10, dim=6)
    terms = losses.VICReg(invariance=1.0, variance=0.0, covariance=0.0).terms(h1, h2)
    assert terms["invariance"].item() == pytest.approx(float(((h1 - h2) ** 2).mean()))
    assert terms["variance"].item() == terms["covariance"].item() == 0.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        losses.vicreg(h1[:1], h2[:1])
