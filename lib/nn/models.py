"""Networks of the study: audio encoders, the projection head and the FSDnoisy18k baseline CNN.

Every model takes log-mel patches shaped (batch, 1, n_mels, frames). Encoders map them to a
representation h (the input of the angular-margin term and of linear evaluation); the
projection head maps h to the unit-norm z that NT-Xent compares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_patches(x: torch.Tensor, *, in_channels: int) -> None:
    """Fail early, with the expected layout, on input that would break deep inside a model."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected log-mel patches shaped (batch, {in_channels}, n_mels, frames), "
            f"got a tensor of shape {tuple(x.shape)}"
        )


def he_init(module: nn.Module, *, mode: str) -> None:
    """He-normal weights and zero biases for the convolutions (BatchNorm keeps torch's 1 and 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """Shared interface of the encoders: `forward(x) -> h`, and `out_dim`, the size of h."""

    def __init__(self, *, in_channels: int, out_dim: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_dim = out_dim


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut, as in ResNet-18."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Encoder(Encoder):
    """ResNet-18 (BasicBlock [2, 2, 2, 2]) on one-channel spectrograms; h is 512-d."""

    widths = (64, 128, 256, 512)

    def __init__(self, *, in_channels: int = 1) -> None:
        super().__init__(in_channels=in_channels, out_dim=self.widths[-1])
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(self.widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        previous = self.widths[0]
        for i, width in enumerate(self.widths):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(BasicBlock(previous, width, stride=stride), BasicBlock(width, width))
            )
            previous = width
        self.stages = nn.Sequential(*stages)
        he_init(self, mode="fan_out")  # as the authors' ResNet-18 (torchvision's init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_patches(x, in_channels=self.in_channels)
        return self.stages(self.stem(x)).mean(dim=(2, 3))


class SmallEncoder(Encoder):
    """A plain CNN for the cpu profile: conv3x3-BN-ReLU blocks with 2x2 max-pool between them.

    Same interface as ResNet18Encoder with h of size channels[-1]. The default widths are the
    4-block CNN of a calibration: it learned useful features from a small real-audio set in
    minutes, and doubling every width costs about three times the compute for little gain there.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 64, 128),
    ) -> None:
        channels = tuple(channels)
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels}")
        super().__init__(in_channels=in_channels, out_dim=channels[-1])
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
            # max-pool before the ReLU: the same values and gradients (both are monotone, ties
            # go to the same element), a quarter of the ReLU's work on a memory-bound CPU
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers.append(nn.ReLU(inplace=True))
            previous = width
        self.features = nn.Sequential(*layers)
        he_init(self, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_patches(x, in_channels=self.in_channels)
        return self.features(x).mean(dim=(2, 3))


class ProjectionHead(nn.Module):
    """SimCLR's MLP head, Linear -> BN -> ReLU -> Linear, ending on the unit sphere."""

    def __init__(
        self, in_dim: int, *, hidden_dim: int | None = None, out_dim: int | None = None
    ) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.out_dim = out_dim or in_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, self.out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(h), dim=1)


class ContrastiveModel(nn.Module):
    """Encoder (h, for the angular term and downstream use) and projection head (z, NT-Xent)."""

    def __init__(self, encoder: Encoder, projection: bool):
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.out_dim) if projection else None

    def forward(
        self, x: torch.Tensor, *, views_apart: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, z) of a batch. With views_apart, x is two views stacked and each half goes
        through on its own, so that batch norm normalises each view's batch separately (the
        authors' two passes, in one call: DDP allows one forward per backward)."""
        if views_apart:
            h, z = zip(*(self(view) for view in x.chunk(2)), strict=True)
            return torch.cat(h), torch.cat(z)
        h = self.encoder(x)
        return h, (self.head(h) if self.head is not None else h)


def in_memory_format(model: nn.Module, config) -> nn.Module:
    """The model in the config's memory format (channels_last suits convolutions on GPUs)."""
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def build_contrastive_model(config, device: torch.device) -> ContrastiveModel:
    """The pretraining model of a config (encoder name, projection head or not, memory format).
    Initial weights depend on the seed only: every loss at a seed starts from the same ones."""
    torch.manual_seed(config.seed)
    model = ContrastiveModel(build_encoder(config.encoder), config.projection).to(device)
    return in_memory_format(model, config)


class BaselineCNN(nn.Module):
    """The FSDnoisy18k baseline CNN (Fonseca et al., ICASSP 2019) of the supervised setup.

    The original is a Keras model on (time, mel) inputs whose max-pools of (4, 2) shrink time
    by 4 and mel by 2. Our inputs are (mel, frames), so the same pooling is written (2, 4).
    With 'same' padding a 96 x 100 patch leaves 48 x 24 x 6 = 6912 values to flatten and the
    network has 531,238 weights (the published "about 0.53 M"); pooling mel by 4 instead would
    give 549,670. The BN -> ReLU in front of conv2 and conv3 acts on maps that are already
    rectified; it is kept because the paper's model has it.

    `forward` returns (logits, feats): feats, the global max-pool of conv3's raw output (48-d,
    before its batch norm and ReLU, as the authors' model), is what the supervised angular
    term compares. Being signed, two features can lie up to pi apart, not pi/2 as after a ReLU.

    The weights keep PyTorch's default initialisation, as the authors' model does (the Keras
    baseline's he_normal is not theirs). The layers are made in their order (conv1, conv2,
    conv3, dense 64, dense out), so after the same torch.manual_seed every weight tensor holds
    their values (our kernels and flattened maps lie along (mel, frames), theirs (time, mel)).
    """

    pool = (2, 4)  # (mel, frames)
    feature_dim = 48  # conv3's channels

    def __init__(self, *, n_classes: int = 20, n_mels: int = 96, frames: int = 100) -> None:
        super().__init__()
        mel_out = n_mels // self.pool[0] ** 2
        frames_out = frames // self.pool[1] ** 2
        if n_classes < 1 or mel_out < 1 or frames_out < 1:
            raise ValueError(
                f"BaselineCNN needs n_classes >= 1, n_mels >= {self.pool[0] ** 2} and frames >= "
                f"{self.pool[1] ** 2}; got n_classes={n_classes}, n_mels={n_mels}, frames={frames}"
            )
        self.input_shape = (n_mels, frames)
        self.convs = nn.Sequential(
            nn.BatchNorm2d(1),
            nn.ReLU(),
            nn.Conv2d(1, 24, 5, padding="same"),
            nn.BatchNorm2d(24),
            nn.ReLU(),
            nn.MaxPool2d(self.pool),
            nn.BatchNorm2d(24),
            nn.ReLU(),
            nn.Conv2d(24, 48, 5, padding="same"),
            nn.BatchNorm2d(48),
            nn.ReLU(),
            nn.MaxPool2d(self.pool),
            nn.BatchNorm2d(48),
            nn.ReLU(),
            nn.Conv2d(48, 48, 5, padding="same"),
            nn.BatchNorm2d(48),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(48 * mel_out * frames_out, 64),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_patches(x, in_channels=1)
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"BaselineCNN was built for (n_mels, frames) = {self.input_shape}, "
                f"got patches of {tuple(x.shape[2:])}"
            )
        raw = self.convs[:-2](x)  # conv3's output; its batch norm and ReLU follow
        return self.head(self.convs[-2:](raw)), raw.amax(dim=(2, 3))


class Classifier(nn.Module):
    """An encoder with a linear classifier on h (fine-tuning): (logits, h) of a batch, as the
    baseline CNN returns (logits, features)."""

    def __init__(self, encoder: Encoder, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.linear = nn.Linear(encoder.out_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.linear(h), h


class Logits(nn.Module):
    """The logits alone of a model that returns (logits, features), for patch classification."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


ENCODERS: dict[str, type[Encoder]] = {"resnet18": ResNet18Encoder, "small": SmallEncoder}


def build_encoder(name: str, **kwargs) -> Encoder:
    """An encoder by its config name ("resnet18" or "small"), built with `kwargs`."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)
