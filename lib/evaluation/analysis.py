"""What a loss did to the embedding space: 2-D maps of clip embeddings and the angles between
the two augmented views of each clip (notebook 05), and where clips sit against the margin
(notebook 04).

The angular-margin term of ACL acts on angles between encoder outputs h: it squares the angle of
each positive pair (two views of one clip) and pushes every negative pair (views of different
clips) beyond the margin m. Measuring those angles on held-out clips, with views made exactly as
in training, shows whether a run learnt what its loss asked for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.manifold import TSNE

from aclaudio.data.datasets import subset_mask
from aclaudio.evaluation import metrics
from aclaudio.evaluation.embeddings import load_pretrained
from aclaudio.nn import augment
from aclaudio.training.batches import contrastive_batches
from aclaudio.training.runs import Run


def view_pair_angles(
    run: Run,
    *,
    subset: str = "test",
    seed: int = 0,
    max_clips: int = 512,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Angles in radians between the encoder outputs h of two augmented views of each clip.

    The views are the training views of a pretraining run: two random patches per clip, mix-back
    with patches of other clips, the run's augmentation and normalisation. The model is its best
    checkpoint (else the last), in eval mode, in float32. Up to `max_clips` clips of `subset`
    (drawn at random beyond that, in subset order) give (positive, negative) as in
    metrics.pair_angles: N angles of matching views and 2N(N - 1) of views of different clips.
    Every random draw comes from `seed`.
    """
    if max_clips < 3:
        raise ValueError(
            f"max_clips must be at least 3 (backgrounds come from two other clips), got {max_clips}"
        )
    model, data, device = load_pretrained(run, progress=progress)
    rows = np.flatnonzero(subset_mask(data.cache.clips, subset))
    if len(rows) < 3:
        raise ValueError(
            f"{run.config.data_dir}: the {subset!r} subset has {len(rows)} usable clips; two "
            "views with backgrounds from other clips need at least 3"
        )
    rng = np.random.default_rng(seed)
    if len(rows) > max_clips:
        rows = np.sort(rng.choice(rows, max_clips, replace=False))
    batch = next(contrastive_batches(data, rows, len(rows), rng))
    x1, x2, bg1, bg2 = (torch.from_numpy(patches).to(device) for patches in batch)
    mean, std = data.normaliser(device, per_band=False)
    generator = torch.Generator(device).manual_seed(seed)
    model.eval()
    with torch.no_grad():
        views = augment.two_views(
            x1, x2, bg1, bg2, run.config.augment, mean=mean, std=std, generator=generator
        )
        h1, h2 = (torch.cat([model.encoder(part) for part in v.split(batch_size)]) for v in views)
    return metrics.pair_angles(h1, h2)


def angle_summary(angles: dict[str, tuple], margin: float) -> pd.DataFrame:
    """One row per run of view_pair_angles' (positive, negative): the mean and median positive
    angle, the mean negative angle, the share of negative pairs closer than `margin` (those
    L_AM still pushes) and the ratio of the mean positive to the mean negative angle (how
    invariant the encoder is against how spread out its space is)."""
    return pd.DataFrame(
        {
            name: {
                "positive: mean angle (rad)": positive.mean(),
                "positive: median angle (rad)": np.median(positive),
                "negative: mean angle (rad)": negative.mean(),
                "negative: fraction below m": (negative < margin).mean(),
                "positive / negative mean angle": positive.mean() / negative.mean(),
            }
            for name, (positive, negative) in angles.items()
        }
    ).T.rename_axis("loss")


def margin_geometry(h, margin: float) -> dict:
    """How an encoder's clip embeddings h (n, dim) sit against a margin: the share of h's
    entries that are exactly 0, the share of clips whose h is all 0 (no direction: left out of
    the angles), the mean angle between the other clips (radians) and the share of their pairs
    farther apart than `margin`. L_AM pushes every negative pair beyond the margin; when h is
    non-negative (a ReLU, then average pooling) no two clips are more than pi/2 apart, so a
    margin near pi/2 can be met only with embeddings that share almost no active unit."""
    h = np.asarray(h)
    directed = h[(h != 0).any(axis=1)]
    angles = metrics.clip_angles(directed) if len(directed) > 1 else np.array([])
    return {
        "zero_share": float((h == 0).mean()),
        "zero_clips": 1 - len(directed) / len(h),
        "mean_angle": float(angles.mean()) if angles.size else float("nan"),
        "beyond_margin": float((angles > margin).mean()) if angles.size else float("nan"),
        "non_negative": bool((h >= 0).all()),
    }


def tsne_2d(embeddings, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D t-SNE map (n, 2) of embeddings, by angle: rows are scaled to unit length first.

    The losses only see directions, so the map does too. Initialised by PCA (stable layouts
    across runs); the perplexity is capped at (n - 1) / 3 so small sets (smoke: 40 clips) work.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"embeddings must be (n, dim) with n >= 3, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("embeddings have all-zero rows: their direction is undefined")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive, got {perplexity}")
    tsne = TSNE(perplexity=min(perplexity, (len(x) - 1) / 3), init="pca", random_state=seed)
    return tsne.fit_transform(x / norms)
