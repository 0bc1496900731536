"""The curves and pictures of the teaching notebook (01): what the angular margin does, and why.

Every curve is computed by the study's own losses (aclaudio.losses) with autograd, on the
smallest batch that has both kinds of pairs: two clips with two views each, on the unit circle.
What the notebook teaches is therefore what the training code does, not a formula typed again.

The two studies (`pair`):
- "positive": each clip's two views are theta apart and the clips sit opposite each other,
  so every positive pair has the angle theta and the negatives lie at pi and pi - theta;
- "negative": each clip's two views coincide and the clips are theta apart, so every
  negative pair has the angle theta and the positives 0.
With reduction="mean" the angular term of either batch equals the loss of one pair:
theta^2 for a positive (while theta < pi - margin keeps the negatives outside the margin) and
max(0, margin - theta)^2 for a negative. At theta = 0 exactly a negative pair gets no push (the
direction to push in is undefined: the losses give the subgradient 0), so curves start just
above 0 (`ANGLES`).
"""

from __future__ import annotations

import io
import math
from contextlib import contextmanager

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize

from . import losses

PAIRS = ("positive", "negative")
CLIP_COLOURS = ("#4C72B0", "#55A868", "#C44E52", "#DD8452")  # the toy's four clips
ANGLES = np.linspace(1e-3, math.pi / 2, 120)  # the angles the notebook plots, 0 to 90 degrees


def on_circle(radians: torch.Tensor) -> torch.Tensor:
    """(k,) angles -> (k, 2) unit vectors at those angles (differentiable)."""
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def two_clip_batch(theta: torch.Tensor, *, pair: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The views (h1, h2) of the two-clip batch whose `pair` pairs all have the angle theta."""
    zero = torch.zeros_like(theta)
    if pair == "positive":  # clip A: 0 and theta, clip B: pi and pi + theta
        first, second = torch.stack([zero, zero + math.pi]), torch.stack([theta, theta + math.pi])
    elif pair == "negative":  # clip A: 0 and 0, clip B: theta and theta
        first = second = torch.stack([zero, theta])
    else:
        raise ValueError(f"pair must be one of {', '.join(PAIRS)}; got {pair!r}")
    return on_circle(first), on_circle(second)


def _angles(theta, *, pair: str, margin: float) -> np.ndarray:
    """theta as a 1-d float64 array, checked to lie where the two-clip study means what it says."""
    theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
    if theta.ndim != 1 or not np.isfinite(theta).all():
        raise ValueError("theta must be a 1-d array of finite angles in radians")
    high = math.pi - margin if pair == "positive" else math.pi
    if theta.min() < 0 or theta.max() > high:
        why = (
            " (beyond, the negatives at pi - theta enter the margin)" if pair == "positive" else ""
        )
        raise ValueError(
            f"theta for {pair} pairs must lie in [0, {high:.4g}] rad{why}; "
            f"got {theta.min():.4g} to {theta.max():.4g}"
        )
    return theta


@contextmanager
def _one_thread():
    """Run tiny tensors on one thread: they gain nothing from more, and on busy cores the
    synchronisation of torch's worker threads made these curves 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _value_and_slope(theta: np.ndarray, *, pair: str, loss) -> tuple[np.ndarray, np.ndarray]:
    """loss(h1, h2) of the two-clip batch at each angle, and its derivative d loss / d theta."""
    values, slopes = [], []
    with _one_thread():
        for angle in theta:
            angle = torch.tensor(angle, dtype=torch.float64, requires_grad=True)
            value = loss(*two_clip_batch(angle, pair=pair))
            (slope,) = torch.autograd.grad(value, angle)
            values.append(value.item())
            slopes.append(slope.item())
    return np.array(values), np.array(slopes)


def angular_loss_curve(theta, *, margin: float = 0.5) -> dict[str, np.ndarray]:
    """The angular term's loss of one pair at each angle theta (rad), positive and negative:
    theta^2 and max(0, margin - theta)^2, as losses.angular_margin computes them."""

    def angular(h1, h2):
        return losses.angular_margin(h1, h2, margin=margin, reduction="mean")

    return {
        pair: _value_and_slope(_angles(theta, pair=pair, margin=margin), pair=pair, loss=angular)[0]
        for pair in PAIRS
    }


def pair_gradients(
    theta,
    *,
    pair: str,
    alpha: float = 0.5,
    margin: float = 0.5,
    temperature: float = 0.2,
) -> dict[str, np.ndarray]:
    """d loss / d theta of the two-clip batch for NT-Xent, the angular term and their mix ACL.

    Positive for a positive pair (the loss falls as the views close: a pull), negative for a
    negative pair inside the margin (the loss falls as they open: a push). ACL is
    alpha * NT-Xent + (1 - alpha) * angular term (losses.acl with reduction "mean" and no
    projection head), mixed here from the two terms' slopes rather than computed a third time.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    theta = _angles(theta, pair=pair, margin=margin)
    terms = {
        "nt_xent": lambda h1, h2: losses.nt_xent(h1, h2, temperature=temperature),
        "angular": lambda h1, h2: losses.angular_margin(h1, h2, margin=margin, reduction="mean"),
    }
    slopes = {
        name: _value_and_slope(theta, pair=pair, loss=loss)[1] for name, loss in terms.items()
    }
    return slopes | {"acl": alpha * slopes["nt_xent"] + (1 - alpha) * slopes["angular"]}


def toy_losses(
    alphas, *, margin: float = 0.5, temperature: float = 0.07, reduction: str = "sum/25"
) -> pd.DataFrame:
    """ACL of the toy example's two arrangements (losses.toy_example) at each alpha.

    Rows: alpha; columns: grouped, swapped. alpha = 1 is NT-Xent alone, alpha = 0 the angular
    term alone.
    """
    _, grouped, swapped = losses.toy_example()
    settings = dict(margin=margin, temperature=temperature, reduction=reduction)
    rows = {
        float(alpha): {
            name: losses.acl(x[:4], x[4:], alpha=float(alpha), **settings).item()
            for name, x in (("grouped", grouped), ("swapped", swapped))
        }
        for alpha in alphas
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("alpha")


def swap_invariant_floor(
    *, temperature: float = 0.07, starts: int = 50, seed: int = 0
) -> tuple[float, torch.Tensor]:
    """The lowest NT-Xent of eight 2-D views (four clips, two views each) for which exchanging
    two clips' second views (the toy's piano-aug and rain-aug) leaves NT-Xent unchanged.

    The swap keeps NT-Xent only if it keeps the sum of those two positive cosines; in 2-D that
    means both sums are 0 (or the two swapped views coincide, and the swap changes nothing).
    A multi-start local search (SLSQP, gradients by autograd through losses.nt_xent) under
    those two constraints; returns the value and the (8, 2) arrangement. An upper bound on the
    true floor that more starts could only lower.
    """
    if starts < 1:
        raise ValueError(f"starts must be at least 1, got {starts}")

    def loss_and_slope(angles: np.ndarray) -> tuple[float, np.ndarray]:
        angles = torch.tensor(angles, requires_grad=True)
        z = on_circle(angles)
        value = losses.nt_xent(z[:4], z[4:], temperature=temperature)
        value.backward()
        return value.item(), angles.grad.numpy()

    # views: piano, violin, rain, snow, then their second views; the swap exchanges 4 and 6
    sums = [
        {"type": "eq", "fun": lambda a: np.cos(a[0] - a[4]) + np.cos(a[2] - a[6])},
        {"type": "eq", "fun": lambda a: np.cos(a[0] - a[6]) + np.cos(a[2] - a[4])},
    ]
    rng = np.random.default_rng(seed)
    best = None
    with _one_thread():
        for _ in range(starts):
            start = rng.uniform(0, 2 * math.pi, 8)
            found = minimize(
                loss_and_slope,
                start,
                jac=True,
                method="SLSQP",
                constraints=sums,
                options={"maxiter": 1000},
            )
            feasible = all(abs(c["fun"](found.x)) < 1e-6 for c in sums)
            if found.success and feasible and (best is None or found.fun < best.fun):
                best = found
    if best is None:
        raise RuntimeError(f"no start of {starts} reached a feasible arrangement: use more")
    return float(best.fun), on_circle(torch.tensor(best.x)).float()


def plot_arrangement(ax: plt.Axes, vectors: torch.Tensor, names: list[str], *, title: str):
    """An arrangement of the toy example on the unit circle: a colour per clip, a filled dot for
    the first view, a ring for the augmentation, a chord joining each positive pair."""
    points = vectors.detach().double().numpy()
    clips = len(points) // 2
    circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="0.8", lw=1, zorder=0)
    for clip in range(clips):
        colour = CLIP_COLOURS[clip % len(CLIP_COLOURS)]
        first, second = points[clip], points[clip + clips]
        ax.plot(*zip(first, second, strict=True), color=colour, lw=1, ls=":")
        ax.scatter(*first, s=60, color=colour, zorder=3)
        ax.scatter(*second, s=60, facecolor="white", edgecolor=colour, lw=2, zorder=3)
        for point, name in ((first, names[clip]), (second, names[clip + clips])):
            ax.annotate(
                name, point, xytext=1.22 * point, ha="center", va="center", color=colour, fontsize=9
            )
    ax.set(title=title, xlim=(-1.6, 1.6), ylim=(-1.6, 1.6), aspect="equal", xticks=[], yticks=[])
    ax.grid(False)


def margin_figure(
    *, margin: float = 0.5, alpha: float = 0.3, temperature: float = 0.2
) -> plt.Figure:
    """Three panels for one margin and alpha: the margin on the circle, the loss of a pair
    against its angle, and the pull or push that ACL and its two terms exert."""
    theta = ANGLES
    fig, (circle, loss_ax, grad_ax) = plt.subplots(1, 3, figsize=(14, 4.2))

    ring = np.linspace(0, 2 * np.pi, 200)
    wedge = np.linspace(-margin, margin, 50)
    circle.plot(np.cos(ring), np.sin(ring), color="0.8", lw=1)
    circle.fill(
        np.r_[0, np.cos(wedge), 0],
        np.r_[0, np.sin(wedge), 0],
        color="#C44E52",
        alpha=0.2,
        label=f"negatives pushed out (within {margin:.2f} rad)",
    )
    circle.annotate("", (1, 0), (0, 0), arrowprops=dict(arrowstyle="->", lw=2, color="0.15"))
    circle.text(1.05, 0, "anchor", va="center")
    circle.set(
        title="Margin on the unit circle",
        aspect="equal",
        xlim=(-1.3, 1.7),
        ylim=(-1.3, 1.3),
        xticks=[],
        yticks=[],
    )
    circle.grid(False)
    circle.legend(loc="lower center", fontsize=8)

    curve = angular_loss_curve(theta, margin=margin)
    loss_ax.plot(theta, curve["positive"], label="positive pair: θ²", color="#4C72B0")
    loss_ax.plot(
        theta, curve["negative"], label=f"negative pair: max(0, {margin:.2f} − θ)²", color="#C44E52"
    )
    loss_ax.set(
        title="Angular term of one pair", xlabel="angle θ between the pair (rad)", ylabel="loss"
    )
    loss_ax.legend(fontsize=8)

    for pair, colour in (("positive", "#4C72B0"), ("negative", "#C44E52")):
        slopes = pair_gradients(
            theta, pair=pair, alpha=alpha, margin=margin, temperature=temperature
        )
        grad_ax.plot(
            theta, np.abs(slopes["acl"]), color=colour, lw=2.5, label=f"ACL on a {pair} pair"
        )
        grad_ax.plot(
            theta,
            alpha * np.abs(slopes["nt_xent"]),
            color=colour,
            ls=":",
            label=f"its NT-Xent share (α = {alpha:.2f} × NT-Xent's)",
        )
    grad_ax.set(
        title=f"Pull and push of ACL, τ = {temperature:g}",
        xlabel="angle θ between the pair (rad)",
        ylabel="|∂ loss / ∂θ| (per rad)",
    )
    grad_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def margin_explorer(
    *, margin: float = 0.5, alpha: float = 0.3, temperature: float = 0.2
) -> widgets.VBox:
    """Sliders for margin, alpha and temperature above margin_figure, redrawn on release.

    The figure is shown as an image widget rather than through ipywidgets.interact, whose
    output capture can hang notebooks executed headless (papermill, nbclient) at random.
    """
    settings = dict(step=0.05, continuous_update=False)
    sliders = {
        "margin": widgets.FloatSlider(
            margin, min=0.05, max=1.5, description="margin m", **settings
        ),
        "alpha": widgets.FloatSlider(alpha, min=0.0, max=1.0, description="α", **settings),
        "temperature": widgets.FloatSlider(
            temperature, min=0.05, max=1.0, description="τ", **settings
        ),
    }

    def render() -> bytes:
        fig = margin_figure(**{name: slider.value for name, slider in sliders.items()})
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=80)
        plt.close(fig)
        return png.getvalue()

    image = widgets.Image(value=render(), format="png")

    def redraw(change) -> None:
        image.value = render()

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox(list(sliders.values())), image])
