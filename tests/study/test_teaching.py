"""The teaching curves against formulas derived by hand for the two-clip batch, and the toy."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

from aclaudio import losses
from aclaudio.evaluation.metrics import pair_angles
from aclaudio.study import teaching

matplotlib.use("Agg")

THETA = np.linspace(0.01, math.pi / 2, 40)


def finite_difference(f, theta: np.ndarray, step: float = 1e-6) -> np.ndarray:
    return (f(theta + step) - f(theta - step)) / (2 * step)


def nt_xent_negative(theta: np.ndarray, tau: float) -> np.ndarray:
    """Every anchor: positive at angle 0, two negatives at theta (the other clip's views)."""
    return -1 / tau + np.log(np.exp(1 / tau) + 2 * np.exp(np.cos(theta) / tau))


def nt_xent_positive(theta: np.ndarray, tau: float) -> np.ndarray:
    """Every anchor: positive at theta, negatives at pi (cos -1) and pi - theta (cos -cos)."""
    c = np.cos(theta)
    return -c / tau + np.log(np.exp(c / tau) + np.exp(-1 / tau) + np.exp(-c / tau))


@pytest.mark.parametrize("pair", teaching.PAIRS)
def test_two_clip_batch_gives_every_pair_of_the_kind_the_angle_theta(pair):
    h1, h2 = teaching.two_clip_batch(torch.tensor(0.7, dtype=torch.float64), pair=pair)
    positives, negatives = (np.sort(a) for a in pair_angles(h1, h2))
    studied, others = (positives, negatives) if pair == "positive" else (negatives, positives)
    assert studied == pytest.approx(0.7)
    assert others == pytest.approx(
        [math.pi - 0.7] * 2 + [math.pi] * 2 if pair == "positive" else [0.0, 0.0], abs=1e-6
    )


@pytest.mark.parametrize("margin", [0.25, 0.5, 1.0])
def test_angular_loss_curve_is_theta_squared_and_the_squared_hinge(margin):
    curve = teaching.angular_loss_curve(THETA, margin=margin)
    assert curve["positive"] == pytest.approx(THETA**2, rel=1e-9)
    assert curve["negative"] == pytest.approx(np.maximum(0, margin - THETA) ** 2, abs=1e-9)


@pytest.mark.parametrize(("alpha", "margin", "tau"), [(0.3, 0.5, 0.2), (0.7, 1.0, 0.07)])
def test_pair_gradients_match_the_hand_derived_slopes(alpha, margin, tau):
    negative = teaching.pair_gradients(
        THETA, pair="negative", alpha=alpha, margin=margin, temperature=tau
    )
    e = np.exp((np.cos(THETA) - 1) / tau)
    assert negative["nt_xent"] == pytest.approx(-2 * np.sin(THETA) * e / (tau * (1 + 2 * e)))
    assert negative["nt_xent"] == pytest.approx(
        finite_difference(lambda t: nt_xent_negative(t, tau), THETA), rel=1e-5, abs=1e-9
    )
    assert negative["angular"] == pytest.approx(-2 * np.maximum(0, margin - THETA), abs=1e-9)

    positive = teaching.pair_gradients(
        THETA, pair="positive", alpha=alpha, margin=margin, temperature=tau
    )
    assert positive["nt_xent"] == pytest.approx(
        finite_difference(lambda t: nt_xent_positive(t, tau), THETA), rel=1e-5, abs=1e-9
    )
    assert positive["angular"] == pytest.approx(2 * THETA)
    for pair, slopes in (("negative", negative), ("positive", positive)):
        for k in (0, 17, 39):  # ACL's slope is the real losses.acl's, by autograd
            angle = torch.tensor(THETA[k], dtype=torch.float64, requires_grad=True)
            h1, h2 = teaching.two_clip_batch(angle, pair=pair)
            value = losses.acl(
                h1, h2, alpha=alpha, margin=margin, temperature=tau, reduction="mean"
            )
            (slope,) = torch.autograd.grad(value, angle)
            assert slopes["acl"][k] == pytest.approx(slope.item(), abs=1e-9)


def test_nt_xent_lets_go_of_a_positive_that_wins_the_softmax_the_angular_term_does_not():
    slopes = teaching.pair_gradients([0.3], pair="positive", temperature=0.2)
    assert slopes["nt_xent"][0] < 1e-3 < 0.5 < slopes["angular"][0]


def test_a_coinciding_negative_gets_the_subgradient_zero():
    slopes = teaching.pair_gradients([0.0], pair="negative", margin=0.5)
    assert slopes["angular"][0] == 0 and slopes["nt_xent"][0] == 0


@pytest.mark.parametrize(
    ("theta", "settings", "message"),
    [
        ([-0.1], {"pair": "negative"}, r"must lie in \[0, 3.142\]"),
        ([3.0], {"pair": "positive", "margin": 0.5}, "negatives at pi - theta enter the margin"),
        ([np.nan], {"pair": "negative"}, "finite angles"),
        ([[0.1]], {"pair": "negative"}, "1-d array"),
        ([0.1], {"pair": "neither"}, "pair must be one of positive, negative"),
        ([0.1], {"pair": "negative", "alpha": 1.5}, r"alpha must lie in \[0, 1\]"),
    ],
)
def test_bad_angles_pairs_and_alphas_are_named(theta, settings, message):
    with pytest.raises(ValueError, match=message):
        teaching.pair_gradients(theta, **settings)


def nt_xent_by_hand(x: torch.Tensor, tau: float) -> float:
    """SimCLR's NT-Xent in numpy: views k and k + N (mod 2N) are positives, self excluded."""
    z = x.double().numpy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / tau
    np.fill_diagonal(logits, -np.inf)
    views = np.arange(len(z))
    positive = logits[views, (views + len(z) // 2) % len(z)]
    return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - positive))


def angular_by_hand(x: torch.Tensor, labels: list[int], margin: float) -> float:
    """Mean theta^2 over same-label pairs plus mean max(0, m - theta)^2 over the others."""
    z = x.double().numpy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    theta = np.arccos(np.clip(z @ z.T, -1, 1))
    same = np.equal.outer(labels, labels)
    positive = same & ~np.eye(len(z), dtype=bool)
    return float(np.mean(theta[positive] ** 2) + np.mean(np.maximum(0, margin - theta[~same]) ** 2))


def positive_pairs(x: torch.Tensor) -> set[frozenset]:
    """The toy's positive pairs as unordered pairs of vectors, whichever clip they are named."""
    return {frozenset({tuple(x[k].tolist()), tuple(x[k + 4].tolist())}) for k in range(4)}


def test_toy_example_holds_the_published_vectors_and_swaps_both_views_of_piano_and_rain():
    names, grouped, swapped = teaching.toy_example()
    assert names == [
        "piano",
        "violin",
        "rain",
        "snow",
        "piano aug",
        "violin aug",
        "rain aug",
        "snow aug",
    ]
    published = {
        "piano": [[1, 0], [1, 0.2]],
        "violin": [[1, 0.3], [1, 0.4]],
        "rain": [[0, 1], [0.2, 1]],
        "snow": [[0.3, 1], [0.4, 1]],
    }
    for clip, views in published.items():
        k = names.index(clip)
        torch.testing.assert_close(grouped[[k, k + 4]], torch.tensor(views, dtype=torch.float32))
    piano, rain = [0, 4], [2, 6]
    assert torch.equal(swapped[piano], grouped[rain]) and torch.equal(swapped[rain], grouped[piano])
    assert torch.equal(swapped[[1, 3, 5, 7]], grouped[[1, 3, 5, 7]])


def test_toy_reproduces_the_papers_value_and_ties_every_self_supervised_term():
    _, grouped, swapped = teaching.toy_example()
    table = teaching.toy_losses(temperature=0.07, margin=0.5)
    assert list(table.columns) == ["grouped", "swapped"]
    clips = [0, 1, 2, 3] * 2
    for name, x in (("grouped", grouped), ("swapped", swapped)):
        nt_xent = table.loc["NT-Xent", name]
        assert nt_xent == pytest.approx(0.9317, abs=1e-4)  # the paper's value, to its digits
        assert nt_xent == pytest.approx(nt_xent_by_hand(x, 0.07), rel=1e-6)
        angular = table.loc["angular term, same clip", name]
        assert angular == pytest.approx(angular_by_hand(x, clips, 0.5), rel=1e-5)
    # the swap relabels clips: the same four pairs of views, so each self-supervised term ties
    assert positive_pairs(grouped) == positive_pairs(swapped)
    for term in ("NT-Xent", "angular term, same clip"):
        assert table.loc[term, "grouped"] == pytest.approx(table.loc[term, "swapped"], abs=1e-6)


def test_only_the_class_aware_term_prefers_the_grouped_arrangement():
    _, grouped, swapped = teaching.toy_example()
    term = teaching.toy_losses(margin=0.5).loc["angular term, same class"]
    coarse = dict(zip(teaching.TOY_CLIPS, teaching.TOY_CLASSES, strict=True))
    assert coarse == {"piano": 0, "violin": 0, "rain": 1, "snow": 1}  # instrument, weather
    classes = list(teaching.TOY_CLASSES) * 2
    assert term["grouped"] == pytest.approx(angular_by_hand(grouped, classes, 0.5), rel=1e-5)
    assert term["swapped"] == pytest.approx(angular_by_hand(swapped, classes, 0.5), rel=1e-5)
    assert term["grouped"] < term["swapped"] - 0.5
    # grouped: the classes lie more than the margin apart, so only the pull on positives is left
    assert term["grouped"] == pytest.approx(angular_by_hand(grouped, classes, 0.0), rel=1e-5)


def test_figures_draw_the_toy_and_the_margin():
    names, grouped, _ = teaching.toy_example()
    fig, ax = matplotlib.pyplot.subplots()
    teaching.plot_arrangement(ax, grouped, names, title="grouped")
    assert ax.get_title() == "grouped" and len(ax.texts) == 8
    fig = teaching.margin_figure(margin=0.75, alpha=0.3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "Margin on the unit circle" and len(fig.axes) == 3
    assert "0.75" in " ".join(t.get_text() for t in fig.axes[1].get_legend().get_texts())
    matplotlib.pyplot.close("all")


def test_the_curves_leave_torchs_thread_count_as_they_found_it():
    threads = torch.get_num_threads()
    teaching.pair_gradients([0.2], pair="negative")
    assert torch.get_num_threads() == threads


def test_the_explorer_redraws_its_figure_when_a_slider_moves():
    matplotlib.pyplot.close("all")
    explorer = teaching.margin_explorer(margin=0.25, alpha=0.7)
    (margin, alpha, temperature), image = explorer.children[0].children, explorer.children[1]
    assert (margin.value, alpha.value, temperature.value) == (0.25, 0.7, 0.2)
    before = bytes(image.value)
    assert before.startswith(b"\x89PNG")
    margin.value = 1.0
    after = bytes(image.value)
    assert after != before and after.startswith(b"\x89PNG")
    assert not matplotlib.pyplot.get_fignums()  # each drawing is closed, none piles up
