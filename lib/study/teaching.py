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

The paper's toy example lives here too (`toy_example`, with the vectors the authors published),
scored by the same losses (`toy_losses`) and drawn by `plot_arrangement`.
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
import torch.nn.functional as F

from aclaudio.nn import objectives

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
    synchronisation of torch's worker threads slows these curves down."""
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
    theta^2 and max(0, margin - theta)^2, as objectives.angular_margin computes them."""

    def angular(h1, h2):
        return objectives.angular_margin(h1, h2, margin=margin, reduction="mean")

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
    alpha * NT-Xent + (1 - alpha) * angular term (objectives.acl with reduction "mean" and no
    projection head), mixed here from the two terms' slopes rather than computed a third time.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    theta = _angles(theta, pair=pair, margin=margin)
    terms = {
        "nt_xent": lambda h1, h2: objectives.nt_xent(h1, h2, temperature=temperature),
        "angular": lambda h1, h2: objectives.angular_margin(
            h1, h2, margin=margin, reduction="mean"
        ),
    }
    slopes = {
        name: _value_and_slope(theta, pair=pair, loss=loss)[1] for name, loss in terms.items()
    }
    return slopes | {"acl": alpha * slopes["nt_xent"] + (1 - alpha) * slopes["angular"]}


TOY_CLIPS = ("piano", "violin", "rain", "snow")
TOY_CLASSES = (0, 0, 1, 1)  # the clips' coarse classes: 0 instrument, 1 weather


def toy_example() -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The paper's toy: eight 2-D views of four clips, in the two arrangements it compares.

    The vectors are those the authors published (their problems_of_infonce repository), before
    normalisation: piano (1, 0) and (1, 0.2), violin (1, 0.3) and (1, 0.4), rain (0, 1) and
    (0.2, 1), snow (0.3, 1) and (0.4, 1). grouped: the instruments lie near the x-axis, the
    weather sounds near the y-axis. swapped: both views of piano exchanged with both views of
    rain, so each region holds an instrument and a weather sound.

    Returns (names, grouped, swapped), each arrangement an (8, 2) tensor ordered like names: the
    four clips' first views, then their second ("aug") views, so that nt_xent(x[:4], x[4:])
    pairs each clip's two views.
    """
    names = [*TOY_CLIPS, *(f"{clip} aug" for clip in TOY_CLIPS)]
    first = [[1.0, 0.0], [1.0, 0.3], [0.0, 1.0], [0.3, 1.0]]
    second = [[1.0, 0.2], [1.0, 0.4], [0.2, 1.0], [0.4, 1.0]]
    grouped = torch.tensor(first + second)
    swapped = grouped[[2, 1, 0, 3, 6, 5, 4, 7]]  # piano's two views <-> rain's two views
    return names, grouped, swapped


def toy_losses(*, temperature: float = 0.07, margin: float = 0.5) -> pd.DataFrame:
    """The toy's two arrangements (columns) under three of the study's losses (rows).

    - "NT-Xent": objectives.nt_xent, the paper's InfoNCE (0.9317 for both at tau = 0.07);
    - "angular term, same clip": objectives.angular_margin, positives the two views of a clip;
    - "angular term, same class": supervised ACL's term, positives the views of clips of the
      same coarse class (TOY_CLASSES): objectives.supervised_acl at alpha = 0, which drops its
      cross-entropy (the toy has no classifier; its logits are placeholders).
    Both angular terms use reduction "mean": the mean over positive pairs plus the mean over
    negative pairs. The swap only relabels clips, so the first two rows tie; the third does not.
    """
    _, grouped, swapped = toy_example()
    labels = torch.tensor(TOY_CLASSES * 2)
    placeholder_logits = torch.zeros(len(labels), max(TOY_CLASSES) + 1)

    def scores(x: torch.Tensor) -> dict[str, float]:
        terms = {
            "NT-Xent": objectives.nt_xent(x[:4], x[4:], temperature=temperature),
            "angular term, same clip": objectives.angular_margin(
                x[:4], x[4:], margin=margin, reduction="mean"
            ),
            "angular term, same class": objectives.supervised_acl(
                placeholder_logits, x, labels, alpha=0.0, margin=margin, reduction="mean"
            ),
        }
        return {name: value.item() for name, value in terms.items()}

    table = pd.DataFrame({"grouped": scores(grouped), "swapped": scores(swapped)})
    return table.rename_axis("loss")


def plot_arrangement(ax: plt.Axes, vectors: torch.Tensor, names: list[str], *, title: str):
    """An arrangement of the toy example, normalised onto the unit circle as the losses see it:
    a colour per clip, a filled dot for the first view, a ring for the augmentation, a chord
    joining each positive pair, each view's name along its ray."""
    points = F.normalize(vectors.detach().double(), dim=1).numpy()
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
            degrees = math.degrees(math.atan2(point[1], point[0]))
            left = abs(degrees) > 90  # turn the text over there, so that it stays upright
            ax.text(
                *(1.08 * point),
                name,
                color=colour,
                fontsize=9,
                va="center",
                ha="right" if left else "left",
                rotation=degrees - 180 * left,
                rotation_mode="anchor",
            )
    # room for the names beyond the views; the origin stays in view
    low = np.minimum(points.min(axis=0), 0) - 0.6
    high = np.maximum(points.max(axis=0), 0) + 0.6
    ax.set(title=title, xlim=(low[0], high[0]), ylim=(low[1], high[1]), xticks=[], yticks=[])
    ax.set_aspect("equal")
    ax.grid(False)


def _draw_margin(circle: plt.Axes, margin: float) -> None:
    """The unit circle, an anchor and the wedge of its margin, where negatives get pushed out."""
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


def margin_figure(
    *, margin: float = 0.5, alpha: float = 0.3, temperature: float = 0.2
) -> plt.Figure:
    """Three panels for one margin and alpha: the margin on the circle, the loss of a pair
    against its angle, and the pull or push that ACL and its two terms exert."""
    theta = ANGLES
    fig, (circle, loss_ax, grad_ax) = plt.subplots(1, 3, figsize=(14, 4.2))
    _draw_margin(circle, margin)

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
