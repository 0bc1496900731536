"""The losses as torch modules: each is its function, with the hyperparameters held by the
constructor (keyword-only, the functions' defaults) and the tensors passed to forward."""

from __future__ import annotations

import inspect

import pytest
import torch

from aclaudio import losses


def views(*shape: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(2)]


def supervised_inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])  # label 3 has no positive pair
    return [torch.randn(8, 4, generator=g), torch.randn(8, 6, generator=g), labels]


# (module, its function, the forward's tensors, hyperparameter settings to compare under)
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
        views(8, 5, seed=2) + views(8, 3, seed=4),
        [
            {},
            {"alpha": 0.0, "margin": 1.0},
            {"alpha": 0.7, "temperature": 0.5, "reduction": "mean"},
        ],
    ),
    (
        losses.SupervisedACL,
        losses.supervised_acl,
        supervised_inputs(),
        [{}, {"alpha": 0.0, "margin": 2.0}, {"alpha": 0.3, "reduction": "sum/7.5"}],
    ),
]
IDS = [module.__name__ for module, *_ in CASES]


def keyword_defaults(callable_) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(callable_).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }


def value_and_grads(loss, inputs, **hyperparameters):
    inputs = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    value = loss(*inputs, **hyperparameters)
    value.backward()
    return value, [x.grad for x in inputs if x.is_floating_point()]


@pytest.mark.parametrize(("module", "function", "inputs", "settings"), CASES, ids=IDS)
def test_module_equals_its_function(module, function, inputs, settings):
    for hyperparameters in settings:
        value, grads = value_and_grads(module(**hyperparameters), inputs)
        expected, expected_grads = value_and_grads(function, inputs, **hyperparameters)
        assert torch.equal(value, expected), hyperparameters
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            assert torch.equal(grad, expected_grad), hyperparameters
    # a different setting gives a different value: the hyperparameters reach the function
    values = {module(**hyperparameters)(*inputs).item() for hyperparameters in settings}
    assert len(values) == len(settings)


@pytest.mark.parametrize(("module", "function"), [case[:2] for case in CASES], ids=IDS)
def test_constructor_is_keyword_only_with_the_functions_defaults(module, function):
    defaults = keyword_defaults(module.__init__)
    assert defaults == keyword_defaults(function)
    _self, *parameters = inspect.signature(module.__init__).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters)
    with pytest.raises(TypeError):
        module(next(iter(defaults.values())))
    assert module().hyperparameters() == defaults


@pytest.mark.parametrize("module", [case[0] for case in CASES], ids=IDS)
def test_no_hidden_parameters_or_buffers(module):
    loss = module()
    assert loss.state_dict() == {}
    assert list(loss.parameters()) == [] and list(loss.buffers()) == []


def test_repr_names_the_hyperparameters():
    assert repr(losses.ACL(alpha=0.7, margin=0.25)) == (
        "ACL(alpha=0.7, margin=0.25, temperature=0.2, reduction='sum/25', gather=False)"
    )
    assert repr(losses.NTXent(temperature=0.1)) == "NTXent(temperature=0.1, gather=False)"
    for module, *_ in CASES:
        assert all(f"{name}=" in repr(module()) for name in keyword_defaults(module.__init__))


def test_hyperparameters_are_attributes_read_at_each_call():
    h1, h2 = views(6, 4, seed=5)
    loss = losses.ACL()
    loss.alpha = 1.0
    assert torch.equal(loss(h1, h2), losses.nt_xent(h1, h2))


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
