"""Models: shapes, parameter counts worked out by hand, memory formats, autocast, learning."""

import copy
import math

import pytest
import torch
from torch import nn

from aclaudio.nn import models


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(k: int, c_in: int, c_out: int, *, bias: bool = False) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c: int) -> int:
    return 2 * c  # weight and bias; running statistics are buffers, not parameters


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def patches(batch: int = 4, n_mels: int = 64, frames: int = 64) -> torch.Tensor:
    return torch.randn(batch, 1, n_mels, frames)


# --- ResNet-18 ---


def test_resnet18_parameter_count_by_hand():
    def block(c_in, c_out):  # BasicBlock: two 3x3 convs + BNs, 1x1 projection when shapes change
        shortcut = conv(1, c_in, c_out) + bn(c_out) if c_in != c_out else 0
        return conv(3, c_in, c_out) + bn(c_out) + conv(3, c_out, c_out) + bn(c_out) + shortcut

    stem = conv(7, 1, 64) + bn(64)  # 3,136 + 128
    stages = 0
    for c_in, c_out in [(64, 64), (64, 128), (128, 256), (256, 512)]:
        stages += block(c_in, c_out) + block(c_out, c_out)
    expected = stem + stages
    assert expected == 11_170_240
    # Independent check: torchvision's resnet18 has 11,689,512 weights with a 3-channel stem and
    # a 1000-way fc; remove the fc and two of the stem's three input channels.
    assert expected == 11_689_512 - linear(512, 1000) - 2 * 7 * 7 * 64
    assert n_params(models.ResNet18Encoder()) == expected
    classifier = models.Classifier(models.ResNet18Encoder(), 20)
    assert n_params(classifier) == expected + linear(512, 20)


@pytest.mark.parametrize("shape", [(96, 101), (64, 64)])
def test_resnet18_output_shapes(shape):
    model = models.ResNet18Encoder()
    x = patches(3, *shape)
    assert model.out_dim == 512
    assert model(x).shape == (3, 512)
    logits, h = models.Classifier(model, 7)(x)
    assert logits.shape == (3, 7) and h.shape == (3, 512)


def test_resnet18_initialisation_is_he_fan_out_and_identity_batchnorm():
    model = models.ResNet18Encoder()
    weight = model.stages[3][1].conv2.weight  # 512 x 512 x 3 x 3
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_resnet18_downsamples_by_32():
    """Stem (2) x max-pool (2) x three strided stages (8): a 64 x 64 patch ends as 2 x 2 maps."""
    model = models.ResNet18Encoder().eval()
    x = patches(1)
    with torch.no_grad():
        maps = model.stages(model.stem(x))
        h = model(x)
    assert maps.shape == (1, 512, 2, 2)
    assert torch.allclose(h, maps.mean(dim=(2, 3)))  # h is the global average pool


# --- small encoder ---


def test_small_encoder_parameter_count_by_hand():
    widths = (1, 16, 32, 64, 128)
    expected = sum(conv(3, a, b) + bn(b) for a, b in zip(widths, widths[1:], strict=False))
    assert expected == 144 + 32 + 4_608 + 64 + 18_432 + 128 + 73_728 + 256
    model = models.SmallEncoder()  # default widths
    assert n_params(model) == expected
    assert model.out_dim == 128


def test_small_encoder_pools_before_its_relu_as_if_after():
    """Max-pool then ReLU (the faster order) gives the values and gradients of ReLU then
    max-pool, the former order, with the same weights; the weights keep their names."""
    torch.manual_seed(0)
    model = models.SmallEncoder().train()
    layers = list(model.features)
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)
    of = {kind: [m for m in layers if isinstance(m, kind)] for kind in kinds}
    pools = [m for m in layers if isinstance(m, nn.MaxPool2d)]
    former = []  # each block's conv, BN and ReLU, then the pool between blocks
    for i, conv in enumerate(of[nn.Conv2d]):
        former += [conv, of[nn.BatchNorm2d][i], of[nn.ReLU][i], *pools[i : i + 1]]
    assert len(former) == len(layers) and [type(m) for m in former] != [type(m) for m in layers]
    x = torch.randn(6, 1, 64, 64) - 0.5  # many negative values: windows of non-positive ones
    outputs, grads = [], []
    for order in (layers, former):
        net = copy.deepcopy(torch.nn.Sequential(*order))
        y = net(x)
        y.square().sum().backward()
        outputs.append(y)
        grads.append([p.grad for p in net.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [k for k in model.state_dict() if k.endswith("weight")] == [
        f"features.{i}.weight" for i in (0, 1, 4, 5, 8, 9, 12, 13)
    ]


def test_small_encoder_custom_widths():
    model = models.SmallEncoder(channels=(8, 12))
    assert model.out_dim == 12
    assert model(patches(2, 64, 101)).shape == (2, 12)


@pytest.mark.parametrize("channels", [(), (16, 0)])
def test_small_encoder_rejects_bad_widths(channels):
    with pytest.raises(ValueError, match="channels"):
        models.SmallEncoder(channels=channels)


@pytest.mark.parametrize("x", [torch.randn(4, 64, 64), torch.randn(4, 2, 64, 64)])
def test_encoders_reject_wrong_layout(x):
    for model in (models.SmallEncoder(channels=(8,)), models.ResNet18Encoder()):
        with pytest.raises(ValueError, match=r"\(batch, 1, n_mels, frames\)"):
            model(x)


def test_build_encoder():
    assert isinstance(models.build_encoder("resnet18"), models.ResNet18Encoder)
    small = models.build_encoder("small", channels=(8, 16))
    assert isinstance(small, models.SmallEncoder) and small.out_dim == 16
    with pytest.raises(ValueError, match=r"'vgg'.*\['resnet18', 'small'\]"):
        models.build_encoder("vgg")


# --- projection head ---


def test_projection_head_sizes_and_unit_norm():
    head = models.ProjectionHead(512)
    assert [n_params(m) for m in head.mlp] == [linear(512, 512), bn(512), 0, linear(512, 512)]
    z = head(torch.randn(16, 512) * 7)
    assert z.shape == (16, 512)
    assert torch.allclose(z.norm(dim=1), torch.ones(16), atol=1e-5)

    narrow = models.ProjectionHead(128, hidden_dim=64, out_dim=32)
    assert narrow.out_dim == 32
    assert narrow(torch.randn(8, 128)).shape == (8, 32)
    assert narrow.mlp[0].out_features == 64


# --- FSDnoisy18k baseline CNN ---


def test_baseline_cnn_parameter_count_by_hand():
    """'same' padding; pools halve mel and quarter time: 96 x 100 -> 48 x 25 -> 24 x 6."""
    convs = (
        bn(1)
        + conv(5, 1, 24, bias=True)
        + bn(24)
        + bn(24)
        + conv(5, 24, 48, bias=True)
        + bn(48)
        + bn(48)
        + conv(5, 48, 48, bias=True)
        + bn(48)
    )
    flat = 48 * 24 * 6
    expected = convs + linear(flat, 64) + linear(64, 20)
    assert expected == 531_238  # "about 0.53 M weights"
    # Pooling mel by 4 and time by 2 instead (96 x 100 -> 6 x 25) would miss the published size.
    assert expected - linear(flat, 64) + linear(48 * 6 * 25, 64) == 549_670
    model = models.BaselineCNN()
    assert n_params(model) == expected
    assert model.head[2].in_features == flat == 6912


def test_baseline_cnn_outputs_logits_and_max_pooled_raw_conv3_features():
    # feats were once pooled after conv3's batch norm and ReLU (so never negative); they now
    # come from conv3's raw output, as the authors' model: the hooks check both ends
    model = models.BaselineCNN().eval()
    conv3, block = model.convs[-3], model.convs[-1]
    assert isinstance(conv3, nn.Conv2d) and conv3.out_channels == 48
    outputs = {}
    conv3.register_forward_hook(lambda m, i, out: outputs.setdefault("conv3", out))
    block.register_forward_hook(lambda m, i, out: outputs.setdefault("block", out))
    logits, feats = model(patches(5, 96, 100))
    assert logits.shape == (5, 20)
    assert feats.shape == (5, model.feature_dim) == (5, 48)
    assert outputs["block"].shape == outputs["conv3"].shape == (5, 48, 24, 6)
    assert torch.equal(feats, outputs["conv3"].amax(dim=(2, 3)))
    assert torch.equal(logits, model.head(outputs["block"]))  # the head sees BN and ReLU
    assert (feats < 0).any()  # signed: pairs are no longer confined within pi/2 of each other


def test_baseline_cnn_keeps_pytorchs_default_initialisation_as_the_authors_model():
    """SUP model.py builds conv1, conv2, conv3, linear1, linear2 and keeps PyTorch's defaults:
    after the same seed, the same layers made in that order hold the same values."""
    torch.manual_seed(7)
    model = models.BaselineCNN()
    torch.manual_seed(7)
    theirs = [
        nn.Conv2d(1, 24, (5, 5), padding="same"),
        nn.Conv2d(24, 48, (5, 5), padding="same"),
        nn.Conv2d(48, 48, (5, 5), padding="same"),
        nn.Linear(6912, 64),
        nn.Linear(64, 20),
    ]
    ours = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        # the default: weights and biases uniform within 1 / sqrt(fan_in) (He-normal's std is
        # sqrt(2 / fan_in), beyond that bound; its biases are zero)
        bound = 1 / math.sqrt(a.weight[0].numel())
        assert a.weight.abs().max() <= bound and a.bias.abs().max() <= bound
        assert a.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert (a.bias != 0).all()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_baseline_cnn_other_sizes_and_bad_input():
    model = models.BaselineCNN(n_classes=4, n_mels=64, frames=64)
    assert model(patches(2, 64, 64))[0].shape == (2, 4)
    with pytest.raises(ValueError, match=r"\(64, 64\).*\(96, 100\)"):
        model(patches(2, 96, 100))
    with pytest.raises(ValueError, match="frames >= 16"):
        models.BaselineCNN(frames=10)


# --- memory format, autocast, learning ---


def model_cases():
    yield "resnet18", models.ResNet18Encoder(), lambda m, x: m(x)
    yield "small", models.SmallEncoder(), lambda m, x: m(x)
    yield "baseline", models.BaselineCNN(n_mels=64, frames=64), lambda m, x: torch.cat(m(x), 1)


@pytest.mark.parametrize("name", ["resnet18", "small", "baseline"])
def test_channels_last_matches_contiguous(name):
    _, model, run = next(case for case in model_cases() if case[0] == name)
    model.eval()
    x = patches(4)
    with torch.no_grad():
        expected = run(model, x)
        model = model.to(memory_format=torch.channels_last)
        got = run(model, x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "small", "baseline"])
def test_bfloat16_autocast_on_cpu(name):
    _, model, run = next(case for case in model_cases() if case[0] == name)
    model.eval()
    x = patches(4)
    with torch.no_grad():
        reference = run(model, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = run(model, x)
    assert got.dtype == torch.bfloat16  # the convolutions really ran in bfloat16
    got = got.float()
    assert torch.isfinite(got).all()
    cosine = nn.functional.cosine_similarity(got.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.99


def overfit(model: nn.Module, logits_of, x: torch.Tensor, y: torch.Tensor, *, steps: int = 20):
    """Cross-entropy before and after `steps` of Adam on one fixed batch."""
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(logits_of(model, x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_small_encoder_overfits_a_tiny_batch():
    x, y = patches(16, 32, 32), torch.arange(16) % 4
    model = models.Classifier(models.SmallEncoder(), 4)  # fine-tuning's network
    first, last = overfit(model, lambda m, x: m(x)[0], x, y)
    assert last < 0.1 * first
    assert all(p.grad is not None for p in model.parameters())


def test_baseline_cnn_overfits_a_tiny_batch():
    x, y = patches(16, 32, 32), torch.arange(16) % 4
    model = models.BaselineCNN(n_classes=4, n_mels=32, frames=32)
    first, last = overfit(model, lambda m, x: m(x)[0], x, y, steps=25)
    assert last < 0.25 * first
