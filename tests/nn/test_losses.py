"""Tests of aclaudio.losses: hand-computed values, an independent library, exact special cases,
and finite, correct gradients where arccos breaks down."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import NTXentLoss

from aclaudio import losses


def unit(*degrees: float, dtype=torch.float32) -> torch.Tensor:
    """Rows of 2-D unit vectors at the given angles."""
    radians = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
    return torch.stack([radians.cos(), radians.sin()], dim=1).to(dtype)


def nt_xent_by_loops(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The SimCLR formula written out anchor by anchor, in float64."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1).tolist()
    n = len(z1)
    total = 0.0
    for i, anchor in enumerate(z):
        sims = [sum(a * b for a, b in zip(anchor, other, strict=True)) / temperature for other in z]
        denominator = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -math.log(math.exp(sims[(i + n) % (2 * n)]) / denominator)
    return total / (2 * n)


def angular_by_loops(feats: torch.Tensor, labels: list[int], margin: float) -> tuple[float, ...]:
    """(sum of theta^2 over positives, sum of hinges over negatives, #positives, #negatives)."""
    u = F.normalize(feats.double(), dim=1).tolist()
    pull = push = 0.0
    n_pos = n_neg = 0
    for i, a in enumerate(u):
        for j, b in enumerate(u):
            if i == j:
                continue
            theta = math.acos(max(-1.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True)))))
            if labels[i] == labels[j]:
                pull, n_pos = pull + theta**2, n_pos + 1
            else:
                push, n_neg = push + max(0.0, margin - theta) ** 2, n_neg + 1
    return pull, push, n_pos, n_neg


# Two clips: clip 0 has views at 0 and 60 degrees, clip 1 at 90 and 180 degrees.
H1, H2 = unit(0, 90), unit(60, 180)
PULL = 2 * ((math.pi / 3) ** 2 + (math.pi / 2) ** 2)  # two positive pairs, each ordered twice
PUSH_M1 = 2 * (1 - math.pi / 6) ** 2  # margin 1: only the 60-90 degree negative is inside it


# ---------------------------------------------------------------- nt_xent


def test_nt_xent_by_hand():
    # views e1, e2 | e1, -e2: clip 0 agrees (cos 1), clip 1 disagrees (cos -1), cross pairs cos 0
    z1, z2 = torch.tensor([[1.0, 0], [0, 1]]), torch.tensor([[1.0, 0], [0, -1]])
    for tau in (0.1, 0.5, 1.0):
        expected = (math.log(1 + 2 * math.exp(-1 / tau)) + math.log(1 + 2 * math.exp(1 / tau))) / 2
        assert losses.nt_xent(z1, z2, temperature=tau).item() == pytest.approx(expected, rel=1e-6)
    # one clip: the only candidate of each anchor is its positive
    assert losses.nt_xent(H1[:1], H2[:1]).item() == pytest.approx(0.0, abs=1e-7)


def test_nt_xent_matches_the_formula_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for tau in (0.07, 0.2, 1.0):
        expected = nt_xent_by_loops(z1, z2, tau)
        assert losses.nt_xent(z1, z2, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
        assert losses.nt_xent(3 * z1, 0.1 * z2, temperature=tau).item() == pytest.approx(
            expected, rel=1e-5
        )


@pytest.mark.parametrize("tau", [0.07, 0.2, 0.5, 1.0])
def test_nt_xent_equals_pytorch_metric_learning(tau):
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    ours_in = [z1.clone().requires_grad_(), z2.clone().requires_grad_()]
    ours = losses.nt_xent(*ours_in, temperature=tau)
    ours.backward()
    pml_in = torch.cat([z1, z2]).requires_grad_()
    labels = torch.arange(16).repeat(2)  # the two views of clip i share label i
    reference = NTXentLoss(temperature=tau)(pml_in, labels)
    reference.backward()
    assert ours.item() == pytest.approx(reference.item(), abs=1e-5)
    ours_grad = torch.cat([ours_in[0].grad, ours_in[1].grad])
    torch.testing.assert_close(ours_grad, pml_in.grad, atol=1e-5, rtol=0)


def test_nt_xent_depends_on_the_pairing_only_through_positive_cosines():
    # Denominators see the same set of vectors whatever the pairing, so re-pairing views changes
    # the loss by -(sum of positive cosines, new - old) / (N tau).
    g = torch.Generator().manual_seed(2)
    z1, z2 = F.normalize(torch.randn(2, 6, 4, generator=g), dim=2)
    shuffled = z2[torch.tensor([3, 0, 1, 5, 2, 4])]
    tau = 0.3
    change = losses.nt_xent(z1, shuffled, temperature=tau) - losses.nt_xent(z1, z2, temperature=tau)
    cosine_gain = (z1 * shuffled).sum() - (z1 * z2).sum()
    assert change.item() == pytest.approx(-cosine_gain.item() / (6 * tau), abs=1e-5)


# ---------------------------------------------------------------- angular_margin


def test_angular_margin_by_hand():
    assert losses.angular_margin(H1, H2, margin=1.0).item() == pytest.approx(
        (PULL + PUSH_M1) / 25, rel=1e-6
    )
    assert losses.angular_margin(H1, H2, margin=1.0, reduction="sum/7.5").item() == pytest.approx(
        (PULL + PUSH_M1) / 7.5, rel=1e-6
    )
    # "mean": 2N = 4 ordered positive pairs, 2N(2N - 2) = 8 ordered negative pairs
    assert losses.angular_margin(H1, H2, margin=1.0, reduction="mean").item() == pytest.approx(
        PULL / 4 + PUSH_M1 / 8, rel=1e-6
    )
    # margin 0.5 < 30 degrees: no negative is inside the margin
    assert losses.angular_margin(H1, H2).item() == pytest.approx(PULL / 25, rel=1e-6)
    assert losses.angular_margin(4 * H1, 0.5 * H2, margin=1.0).item() == pytest.approx(
        (PULL + PUSH_M1) / 25, rel=1e-6
    )


def test_angular_margin_matches_pairwise_loops():
    g = torch.Generator().manual_seed(3)
    h1, h2 = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    pull, push, n_pos, n_neg = angular_by_loops(torch.cat([h1, h2]), list(range(6)) * 2, 1.2)
    assert (n_pos, n_neg) == (12, 120)
    ours = losses.angular_margin(h1, h2, margin=1.2, reduction="sum/25").item()
    assert ours == pytest.approx((pull + push) / 25, rel=1e-10)
    ours = losses.angular_margin(h1, h2, margin=1.2, reduction="mean").item()
    assert ours == pytest.approx(pull / n_pos + push / n_neg, rel=1e-10)


def test_zero_margin_leaves_only_the_positive_term():
    # Rotating clip 1's two views together keeps its positive angle but moves every negative.
    rotated1, rotated2 = unit(0, 75), unit(60, 165)
    for h1, h2 in ((H1, H2), (rotated1, rotated2)):
        assert losses.angular_margin(h1, h2, margin=0.0).item() == pytest.approx(
            PULL / 25, rel=1e-6
        )
    assert losses.angular_margin(H1, H2, margin=2.0) != losses.angular_margin(
        rotated1, rotated2, margin=2.0
    )


def test_mean_reduction_is_independent_of_batch_size():
    # N clips whose views meet at angle phi, every clip orthogonal to every other one
    phi = 0.4
    for n in (2, 8, 32):
        eye = torch.eye(2 * n)
        h1 = math.cos(phi / 2) * eye[:n] + math.sin(phi / 2) * eye[n:]
        h2 = math.cos(phi / 2) * eye[:n] - math.sin(phi / 2) * eye[n:]
        assert losses.angular_margin(h1, h2, reduction="mean").item() == pytest.approx(
            phi**2, rel=1e-5
        )
        assert losses.angular_margin(h1, h2, reduction="sum/25").item() == pytest.approx(
            2 * n * phi**2 / 25, rel=1e-5
        )


@pytest.mark.parametrize(
    "reduction", ["none", "sum/", "sum/0", "sum/-25", "sum/x", "sum/inf", "sum/nan", "avg", None]
)
def test_bad_reduction_is_refused(reduction):
    with pytest.raises(ValueError, match=r'"mean", "sum" or "sum/<D>"'):
        losses.angular_margin(H1, H2, reduction=reduction)
    with pytest.raises(ValueError, match=r'"mean", "sum" or "sum/<D>"'):
        losses.supervised_acl(torch.zeros(2, 2), H1, torch.tensor([0, 1]), reduction=reduction)


def test_sum_and_a_divisor_are_the_papers_reduction():
    # margin 1: the sum over ordered pairs is PULL + PUSH_M1 (worked out above)
    assert losses.angular_margin(H1, H2, margin=1.0, reduction="sum").item() == pytest.approx(
        PULL + PUSH_M1, rel=1e-6
    )
    by_divisor = losses.angular_margin(H1, H2, margin=1.0, reduction="sum", divisor=25)
    assert by_divisor.item() == pytest.approx((PULL + PUSH_M1) / 25, rel=1e-6)
    h1, h2 = torch.randn(8, 16), torch.randn(8, 16)
    assert losses.acl(h1, h2, reduction="sum", divisor=25) == losses.acl(h1, h2)
    assert losses.ACL(divisor=25).settings == losses.ACL().settings
    logits, labels = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert losses.supervised_acl(logits, h1, labels, reduction="sum", divisor=50) == (
        losses.supervised_acl(logits, h1, labels)
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"reduction": "mean", "divisor": 25}, "divisor=25 goes with reduction=.sum.; got 'mean'"),
        ({"reduction": "sum/25", "divisor": 25}, 'goes with reduction="sum"'),
        ({"divisor": 0}, "divisor must be a positive number, got 0"),
        ({"divisor": "25"}, "divisor must be a positive number"),
    ],
)
def test_a_divisor_without_sum_names_what_was_passed(settings, message):
    with pytest.raises(ValueError, match=message):
        losses.acl(H1, H2, **settings)


def test_objectives_without_a_reduction_take_no_divisor():
    with pytest.raises(ValueError, match="NTXent takes no divisor"):
        losses.NTXent(divisor=25)


# ---------------------------------------------------------------- acl


def test_acl_special_cases_are_exact():
    g = torch.Generator().manual_seed(4)
    h1, h2, z1, z2 = (torch.randn(8, 16, generator=g) for _ in range(4))
    options = dict(margin=0.7, temperature=0.1, reduction="mean")
    contrastive = losses.nt_xent(z1, z2, temperature=0.1)
    angular = losses.angular_margin(h1, h2, margin=0.7, reduction="mean")
    assert torch.equal(losses.acl(h1, h2, z1, z2, alpha=1.0, **options), contrastive)
    assert torch.equal(losses.acl(h1, h2, z1, z2, alpha=0.0, **options), angular)
    mixed = losses.acl(h1, h2, z1, z2, alpha=0.3, **options)
    assert mixed.item() == pytest.approx(0.3 * contrastive.item() + 0.7 * angular.item(), rel=1e-6)
    # without a projection head, h feeds both terms
    assert torch.equal(losses.acl(h1, h2, alpha=1.0), losses.nt_xent(h1, h2))
    assert losses.acl(h1, h2).item() == pytest.approx(
        0.3 * losses.nt_xent(h1, h2).item() + 0.7 * losses.angular_margin(h1, h2).item(), rel=1e-6
    )


def test_acl_gradients_at_alpha_one_are_those_of_nt_xent():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 6, 8, generator=g)
    a = h.clone().requires_grad_()
    b = h.clone().requires_grad_()
    losses.acl(a[0], a[1], alpha=1.0).backward()
    losses.nt_xent(b[0], b[1]).backward()
    assert torch.equal(a.grad, b.grad)


def test_gather_without_a_process_group_is_a_no_op():
    assert torch.equal(losses.acl(H1, H2, gather=True), losses.acl(H1, H2))


# ---------------------------------------------------------------- supervised_acl


def test_supervised_acl_by_hand():
    feats = unit(0, 90, 180, 10)
    labels = torch.tensor([0, 1, 1, 0])
    logits = torch.zeros(4, 3)  # uniform over 3 classes: cross-entropy log 3
    pull = 2 * ((math.pi / 18) ** 2 + (math.pi / 2) ** 2)  # 0-10 and 90-180 degrees
    push = 2 * ((2 - math.pi / 2) ** 2 + (2 - 4 * math.pi / 9) ** 2)  # margin 2: 90 and 80 degrees
    ce = math.log(3)
    for alpha in (0.0, 0.7, 1.0):
        value = losses.supervised_acl(logits, feats, labels, alpha=alpha, margin=2.0).item()
        assert value == pytest.approx(alpha * ce + (1 - alpha) * (pull + push) / 50, rel=1e-6)
    value = losses.supervised_acl(logits, feats, labels, margin=2.0, reduction="mean").item()
    assert value == pytest.approx(0.7 * ce + 0.3 * (pull / 4 + push / 8), rel=1e-6)
    # default margin 0.5: every different-label pair is at least 80 degrees apart
    value = losses.supervised_acl(logits, feats, labels).item()
    assert value == pytest.approx(0.7 * ce + 0.3 * pull / 50, rel=1e-6)


def test_supervised_acl_extremes_are_exact():
    g = torch.Generator().manual_seed(6)
    logits, feats = torch.randn(10, 4, generator=g), torch.randn(10, 48, generator=g)
    labels = torch.randint(0, 4, (10,), generator=g)
    assert torch.equal(
        losses.supervised_acl(logits, feats, labels, alpha=1.0), F.cross_entropy(logits, labels)
    )
    pull, push, _, _ = angular_by_loops(feats, labels.tolist(), 0.5)
    assert losses.supervised_acl(logits, feats, labels, alpha=0.0).item() == pytest.approx(
        (pull + push) / 50, rel=1e-5
    )


def test_supervised_mean_without_positive_pairs():
    # all labels distinct: no positive pair; its term counts as 0 instead of 0 / 0
    feats = unit(0, 10, 200)
    value = losses.supervised_acl(
        torch.zeros(3, 3), feats, torch.tensor([0, 1, 2]), alpha=0.0, reduction="mean"
    )
    assert value.item() == pytest.approx(2 * (0.5 - math.pi / 18) ** 2 / 6, rel=1e-5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.nt_xent(torch.zeros(4, 8), torch.zeros(3, 8)), "same shape"),
        (lambda: losses.nt_xent(torch.zeros(8), torch.zeros(8)), r"\(N, d\)"),
        (lambda: losses.nt_xent(torch.zeros(0, 8), torch.zeros(0, 8)), "N >= 1"),
        (lambda: losses.angular_margin(torch.ones(2, 2, dtype=torch.long), H1), "float"),
        (lambda: losses.nt_xent(H1, H2, temperature=0.0), "temperature"),
        (lambda: losses.angular_margin(H1, H2, margin=-0.1), "margin"),
        (lambda: losses.acl(H1, H2, alpha=1.5), "alpha"),
        (lambda: losses.acl(H1, H2, H1), "both z1 and z2"),
        (lambda: losses.ACL()(torch.zeros(4, 8), torch.zeros(3, 8)), "h1 and h2 must be"),
        (lambda: losses.supervised_acl(torch.zeros(3, 2), H1, torch.tensor([0, 1])), r"\(B, d\)"),
        (
            lambda: losses.supervised_acl(torch.zeros(2, 2), H1.long(), torch.tensor([0, 1])),
            "float",
        ),
        (lambda: losses.supervised_acl(torch.zeros(2, 2), H1, torch.tensor([0, 2])), r"\[0, 1\]"),
        (lambda: losses.supervised_acl(torch.zeros(2, 2), H1, torch.tensor([0.0, 1.0])), "integer"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_tensors_are_refused():
    with pytest.raises(TypeError, match="tensors"):
        losses.nt_xent(H1, H2.numpy())


# ---------------------------------------------------------------- numerical soundness


def awkward_views(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Views with identical, opposite and nearly identical positives, and identical and nearly
    identical negatives (clip 3's views sit on and next to clip 0's), at assorted norms."""
    g = torch.Generator().manual_seed(7)
    h1 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    nudge = 1e-4 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    h1[3] = 2.5 * h1[0]
    h2 = torch.stack([h1[0], -0.5 * h1[1], h1[2] + nudge[0], h1[0] + nudge[1]])
    return h1.to(dtype), h2.to(dtype)


def naive_angular(h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """The reference recipe: arccos of a cosine clamped at 1 - 1e-10, positives by boolean mask."""
    u = F.normalize(torch.cat([h1, h2]), dim=1)
    theta = torch.arccos((u @ u.T).clamp(-1 + 1e-10, 1 - 1e-10))
    clip = torch.arange(len(h1)).repeat(2)
    positive = (clip[:, None] == clip[None, :]) & ~torch.eye(len(u), dtype=torch.bool)
    return theta[positive].square().sum() / 25


@pytest.mark.parametrize("reduction", ["sum/25", "mean"])
def test_gradcheck_on_awkward_pairs(reduction):
    h1, h2 = (x.requires_grad_() for x in awkward_views(torch.float64))
    assert torch.autograd.gradcheck(
        lambda a, b: losses.angular_margin(a, b, reduction=reduction), (h1, h2)
    )
    assert torch.autograd.gradcheck(
        lambda a, b: losses.acl(a, b, a + b, a - 2 * b, alpha=0.4, reduction=reduction), (h1, h2)
    )
    labels = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])  # clips 0 and 3 share a label
    logits = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda lg, a, b: losses.supervised_acl(lg, torch.cat([a, b]), labels, reduction=reduction),
        (logits, h1, h2),
    )


def test_float32_gradients_are_finite_and_accurate_where_arccos_fails():
    h1, h2 = awkward_views(torch.float32)
    naive_in = [h1.clone().requires_grad_(), h2.clone().requires_grad_()]
    naive_angular(*naive_in).backward()
    assert not torch.isfinite(naive_in[0].grad).all()  # what the stable angle is for

    ours_in = [h1.clone().requires_grad_(), h2.clone().requires_grad_()]
    precise_in = [x.double().requires_grad_() for x in (h1, h2)]
    for inputs in (ours_in, precise_in):
        losses.acl(*inputs, alpha=0.3, margin=0.5).backward()
    for ours, precise in zip(ours_in, precise_in, strict=True):
        assert torch.isfinite(ours.grad).all()
        torch.testing.assert_close(ours.grad.double(), precise.grad, atol=2e-4, rtol=1e-3)


def test_collapsed_batch_stays_accurate_in_float32():
    # every view within ~1e-4 rad of every other: 65,280 close pairs, recomputed in chunks
    g = torch.Generator().manual_seed(8)
    h = torch.randn(1, 16, generator=g, dtype=torch.float64)
    h = h + 1e-4 * torch.randn(2, 128, 16, generator=g, dtype=torch.float64)
    values, grads = [], []
    for dtype in (torch.float32, torch.float64):
        x = h.to(dtype).requires_grad_()
        value = losses.angular_margin(x[0], x[1], reduction="mean")
        value.backward()
        values.append(value.item())
        grads.append(x.grad.double())
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-2 * grads[1].abs().max(), rtol=0)


def test_bfloat16_autocast_computes_in_float32():
    h1, h2 = awkward_views(torch.float32)
    layer = torch.nn.Linear(3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f1, f2 = layer(h1), layer(h2)
        assert f1.dtype == torch.bfloat16
        value = losses.acl(f1, f2)
        logits = layer(torch.cat([h1, h2]))
        supervised = losses.supervised_acl(logits, torch.cat([f1, f2]), torch.arange(8) % 3)
    assert value.dtype == supervised.dtype == torch.float32
    assert torch.equal(value, losses.acl(f1.float(), f2.float()))
    (value + supervised).backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
