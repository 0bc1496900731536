"""The objectives as torch modules and their registry: each module is its function, its settings
a frozen dataclass with the function's defaults, its loss the sum of the terms it declares."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from aclaudio import losses
from aclaudio.nn import objectives


def views(*shape: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(2)]


def supervised_inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])  # label 3 has no positive pair
    return [torch.randn(8, 4, generator=g), torch.randn(8, 6, generator=g), labels]


#: Inputs of each kind of objective: two views' h and z, or logits, features and labels.
INPUTS = {"views": views(8, 5, seed=2) + views(8, 3, seed=4), "labels": supervised_inputs()}

# (module, its function, the forward's tensors, settings to compare under)
CASES = [
    (losses.NTXent, losses.nt_xent, views(8, 5, seed=0), [{}, {"temperature": 0.07}]),
    (
        losses.AngularMargin,
        losses.angular_margin,
        views(8, 5, seed=1),
        [{}, {"margin": 1.2}, {"margin": 0.0, "reduction": "mean"}],
    ),
    (
        losses.ACL,
        losses.acl,
        INPUTS["views"],
        [
            {},
            {"alpha": 0.0, "margin": 1.0},
            {"alpha": 0.7, "temperature": 0.5, "reduction": "mean"},
        ],
    ),
    (
        losses.SupervisedACL,
        losses.supervised_acl,
        INPUTS["labels"],
        [{}, {"alpha": 0.0, "margin": 2.0}, {"alpha": 0.3, "reduction": "sum/7.5"}],
    ),
]
IDS = [module.__name__ for module, *_ in CASES]
REGISTERED = list(objectives.OBJECTIVES.items())


def keyword_defaults(callable_) -> dict:
    """A function's keyword settings (divisor is not one: it folds into reduction)."""
    return {
        name: p.default
        for name, p in inspect.signature(callable_).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in ("gather", "divisor")
    }


def value_and_grads(loss, inputs, **settings):
    inputs = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    value = loss(*inputs, **settings)
    value.backward()
    return value, [x.grad for x in inputs if x.is_floating_point()]


@pytest.mark.parametrize(("module", "function", "inputs", "settings"), CASES, ids=IDS)
def test_module_equals_its_function(module, function, inputs, settings):
    for chosen in settings:
        value, grads = value_and_grads(module(**chosen), inputs)
        expected, expected_grads = value_and_grads(function, inputs, **chosen)
        assert torch.equal(value, expected), chosen
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert torch.equal(grad, expected_grad), chosen
    # a different setting gives a different value: the settings reach the function
    values = {module(**chosen)(*inputs).item() for chosen in settings}
    assert len(values) == len(settings)


@pytest.mark.parametrize(
    ("module", "function"),
    [
        (losses.NTXent, losses.nt_xent),
        (losses.AngularMargin, losses.angular_margin),
        (losses.SupervisedACL, losses.supervised_acl),
        (losses.SupCon, losses.supcon),
    ],
)
def test_settings_default_to_the_functions_defaults(module, function):
    defaults = dataclasses.asdict(module.Settings())
    shared = keyword_defaults(function)
    assert {name: defaults[name] for name in shared} == shared
    with pytest.raises(TypeError):
        module(next(iter(defaults.values())))  # keyword-only


@pytest.mark.parametrize(("name", "cls"), REGISTERED, ids=[name for name, _ in REGISTERED])
def test_every_registered_objective_declares_its_terms_and_sums_them(name, cls):
    """An objective with its default settings: terms keyed exactly as declared, each a finite
    scalar that reaches the inputs, and forward their sum."""
    assert cls.inputs in INPUTS and cls.term_labels
    assert all(isinstance(label, str) and label for label in cls.term_labels.values())
    objective = objectives.build(name, cls.inputs)
    inputs = [
        x.clone().requires_grad_() if x.is_floating_point() else x for x in INPUTS[cls.inputs]
    ]
    terms = objective.terms(*inputs)
    assert list(terms) == list(cls.term_labels)
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    assert torch.equal(objective(*inputs), sum(terms.values()))
    objective(*inputs).backward()
    assert any(x.grad is not None and x.grad.abs().sum() > 0 for x in inputs if x.requires_grad)
    settings = objective.settings
    assert dataclasses.is_dataclass(settings) and settings == cls.Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.__setattr__(next(iter(dataclasses.asdict(settings)), "x"), 0)


def test_the_registry_picks_by_name_and_kind_and_checks_settings():
    assert objectives.get("acl", "views") is losses.ACL
    assert objectives.get("supcon", "labels") is losses.SupCon
    with pytest.raises(
        ValueError,
        match="unknown objective 'acl' here; choose one of supervised_acl, cross_entropy, supcon",
    ):
        objectives.get("acl", "labels")
    with pytest.raises(ValueError, match="unknown objective 'barlow_twins'"):
        objectives.get("barlow_twins", "views")
    chosen = objectives.settings("acl", "views", {"alpha": 0.5})
    assert chosen == losses.ACL.Settings(alpha=0.5)
    assert objectives.settings("acl", "views", chosen) is chosen
    assert objectives.settings("ntxent", "views") == losses.NTXent.Settings()
    with pytest.raises(ValueError, match="NTXent has no setting alpha; its settings: temperature"):
        objectives.settings("ntxent", "views", {"alpha": 0.5})
    with pytest.raises(ValueError, match="ACL's settings must be a mapping, got 3"):
        objectives.settings("acl", "views", 3)
    with pytest.raises(ValueError, match="settings of ACL given to objective 'ntxent'"):
        objectives.settings("ntxent", "views", chosen)
    with pytest.raises(ValueError, match="ACL has no setting beta; its settings: alpha, margin"):
        losses.ACL(beta=1.0)
    built = objectives.build("acl", "views", {"margin": 1.0}, gather=True)
    assert built.settings.margin == 1.0 and built.gather


@pytest.mark.parametrize(("name", "cls"), REGISTERED, ids=[name for name, _ in REGISTERED])
def test_no_hidden_parameters_or_buffers(name, cls):
    loss = cls()
    assert loss.state_dict() == {}
    assert list(loss.parameters()) == [] and list(loss.buffers()) == []


def test_repr_names_the_settings():
    assert repr(losses.ACL(alpha=0.7, margin=0.25)) == (
        "ACL(alpha=0.7, margin=0.25, temperature=0.2, reduction='sum/25')"
    )
    assert repr(losses.NTXent(temperature=0.1)) == "NTXent(temperature=0.1)"


def test_acl_terms_are_its_weighted_parts():
    h1, h2, z1, z2 = INPUTS["views"]
    terms = losses.ACL(alpha=0.3, margin=0.8).terms(h1, h2, z1, z2)
    assert torch.equal(terms["ntxent"], 0.3 * losses.nt_xent(z1, z2))
    assert torch.equal(terms["angular"], 0.7 * losses.angular_margin(h1, h2, margin=0.8))
    assert torch.equal(losses.ACL(alpha=1.0)(h1, h2, z1, z2), losses.nt_xent(z1, z2))


def test_a_training_step_with_the_modules():
    torch.manual_seed(0)
    encoder, head, classifier = torch.nn.Linear(10, 8), torch.nn.Linear(8, 4), torch.nn.Linear(8, 3)
    model = torch.nn.ModuleList([encoder, head, classifier])
    self_supervised, supervised = losses.ACL(margin=1.0), losses.SupervisedACL(margin=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 10)
    view1, view2 = x + 0.3 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)
    labels = torch.arange(16) % 3

    def total() -> torch.Tensor:
        h1, h2 = encoder(view1), encoder(view2)
        h = encoder(x)
        return self_supervised(h1, h2, head(h1), head(h2)) + supervised(classifier(h), h, labels)

    first = total()
    for _ in range(20):
        optimizer.zero_grad()
        loss = total()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()
    assert total() < 0.9 * first
