"""The training step: its loss is the objective's on the step's own views, and the gradient norm
it measures for each term is that term's alone."""

from __future__ import annotations

import pytest
import torch

from aclaudio import losses
from aclaudio.data import features
from aclaudio.nn import augment, models, objectives
from aclaudio.training import config
from aclaudio.training.step import (
    Augmentation,
    contrastive_step,
    labelled_step,
    term_gradient_norms,
)

CPU = torch.device("cpu")


def plain_config(**overrides):
    """float32, default memory format: what the step's forward pass does is exactly model(x)."""
    values = dict(data_dir="/d", amp=False, channels_last=False) | overrides
    return config.profile_config("pretrain", "smoke", **values)


def patches(n: int, seed: int) -> list[torch.Tensor]:
    preset = features.PRESETS["cpu"]
    generator = torch.Generator().manual_seed(seed)
    return list(torch.randn(n, 8, 1, preset.n_mels, preset.patch_frames, generator=generator))


def test_term_gradient_norms_are_those_of_each_term_alone():
    cfg = plain_config(alpha=0.3)
    model = models.build_contrastive_model(cfg, CPU)
    v1, v2 = patches(2, seed=0)
    h, z = model(torch.cat([v1, v2]), views_apart=True)
    terms = objectives.build("acl", "views", cfg.loss).terms(*h.chunk(2), *z.chunk(2))
    encoder = list(model.encoder.parameters())
    measured = term_gradient_norms(terms, encoder)
    assert all(p.grad is None for p in model.parameters())  # the step's gradient untouched
    sum(terms.values()).backward()  # the graph was kept for the step

    def norm_alone(term):
        model.zero_grad()
        h, z = model(torch.cat([v1, v2]), views_apart=True)
        term(*h.chunk(2), *z.chunk(2)).backward()
        return torch.stack([p.grad.norm() for p in encoder]).norm().item()

    ntxent = norm_alone(lambda h1, h2, z1, z2: 0.3 * losses.nt_xent(z1, z2))
    angular = norm_alone(lambda h1, h2, z1, z2: 0.7 * losses.angular_margin(h1, h2))
    assert measured == {
        "grad_ntxent": pytest.approx(ntxent, rel=1e-5),
        "grad_angular": pytest.approx(angular, rel=1e-5),
    }


@pytest.mark.parametrize("objective", ["acl", "ntxent"])
def test_the_contrastive_step_is_the_objective_on_its_own_views(objective):
    """Batch -> two augmented views -> each view through the model -> the objective: the same
    loss as those steps written out by hand, with the terms the objective declares."""
    cfg = plain_config(objective=objective)
    model = models.build_contrastive_model(cfg, CPU)
    x1, x2, background1, background2 = patches(4, seed=1)
    mean, std = torch.tensor(-4.0), torch.tensor(2.0)
    augmentation = Augmentation(cfg.augment, mean, std, torch.Generator().manual_seed(5))
    step = contrastive_step(
        model,
        (x1, x2, background1, background2),
        objective=objectives.build(objective, "views", cfg.loss),
        augmentation=augmentation,
        execution=cfg,
        device=CPU,
        measure=list(model.encoder.parameters()),
    )

    v1, v2 = augment.two_views(
        x1,
        x2,
        background1,
        background2,
        cfg.augment,
        mean=mean,
        std=std,
        generator=torch.Generator().manual_seed(5),
    )
    (h1, z1), (h2, z2) = model(v1), model(v2)  # each view's batch normalised on its own
    expected = objectives.build(objective, "views", cfg.loss)(h1, h2, z1, z2)
    assert step.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    labels = objectives.OBJECTIVES[objective].term_labels
    assert list(step.gradient_norms) == [f"grad_{name}" for name in labels]


def test_the_labelled_step_normalises_then_applies_the_objective():
    torch.manual_seed(0)
    model = models.BaselineCNN(n_classes=3, n_mels=96, frames=100).eval()  # no dropout draws
    x = torch.randn(6, 1, 96, 100)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    mean, std = torch.linspace(-1, 1, 96), torch.linspace(1, 3, 96)  # one value per band
    cfg = config.profile_config("supervised", "smoke", amp=False, channels_last=False)
    objective = objectives.build("supervised_acl", "labels", {"alpha": 0.6})
    step = labelled_step(
        model, (x, labels), objective=objective, normaliser=(mean, std), execution=cfg, device=CPU
    )
    logits, feats = model((x - mean[:, None]) / std[:, None])
    expected = losses.supervised_acl(logits, feats, labels, alpha=0.6)
    assert step.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert step.gradient_norms == {}  # measured only when asked
