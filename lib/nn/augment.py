"""Positive-pair views for self-supervised pretraining, computed on whole batches.

Training reads log-mel patches (log10 mel power, shaped (batch, channels, n_mels, frames)) and
turns each into an augmented view, in the order of the paper: mix-back, random resized crop,
compander, Gaussian noise, optional SpecAugment, normalisation. Everything is batched tensor
code on the patches' own device (so a GPU never waits for the CPU), every random draw is per
sample and comes from an optional `torch.Generator` (so runs are reproducible), and the neutral
setting of every augmentation is an exact no-op. The crop draws the authors' integer boxes (their
torchvision-style sampler and PIL's bilinear resize), so the views match theirs in distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; defaults are the paper's (SpecAugment off, masks sized for 96x101).

    mixback=0, crop_scale=(1, 1), compander=1 and noise=0 each switch one augmentation off
    exactly; `AugmentConfig.off()` switches all of them off.
    """

    mixback: float = 0.05
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    compander: float = 0.75
    noise: float = 0.01
    specaugment: bool = False
    freq_mask: int = 20
    time_mask: int = 20

    def __post_init__(self) -> None:
        # Lists (from JSON or --set overrides) become tuples so the config stays hashable.
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(self.crop_ratio))
        _check_number("mixback", self.mixback, low=0.0, high=1.0)
        _check_interval("crop_scale", self.crop_scale, high=1.0)
        _check_interval("crop_ratio", self.crop_ratio, high=math.inf)
        _check_number("compander", self.compander, low=0.0, high=math.inf, open_low=True)
        _check_number("noise", self.noise, low=0.0, high=math.inf)
        _check_count("freq_mask", self.freq_mask)
        _check_count("time_mask", self.time_mask)

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all: a view is just the normalised patch."""
        return cls(mixback=0.0, crop_scale=(1.0, 1.0), compander=1.0, noise=0.0)


def mix_back(
    fg: torch.Tensor,
    bg: torch.Tensor,
    *,
    max_ratio: float,
    generator: torch.Generator | None = None,
    level: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mix a patch of another clip into each patch, in linear power, at a ~ U(0, max_ratio).

    Mixed = (1 - a) * fg + a * (E_fg / E_bg) * bg with E the patch's total power, so the
    background brings a times the foreground's energy whatever its own loudness. `level`, the
    draws of U(0, 1) that set a (one per patch), lets two views of a clip share theirs.
    """
    _check_patches(fg, "fg")
    if bg.shape != fg.shape:
        raise ValueError(f"background shape {tuple(bg.shape)} differs from {tuple(fg.shape)}")
    _check_number("max_ratio", max_ratio, low=0.0, high=1.0)
    if max_ratio == 0:
        return fg
    # Half precision would overflow the energy sums: work in at least float32.
    work = torch.promote_types(fg.dtype, torch.float32)
    fg_power = torch.pow(10.0, fg.to(work))
    bg_power = torch.pow(10.0, bg.to(device=fg.device, dtype=work))
    if level is None:
        level = _uniform(fg_power, 0.0, 1.0, generator)
    a = max_ratio * level.to(work)
    tiny = torch.finfo(work).tiny  # guards against silent patches and log10(0)
    fg_energy = fg_power.sum(dim=(1, 2, 3), keepdim=True)
    bg_energy = bg_power.sum(dim=(1, 2, 3), keepdim=True).clamp_min(tiny)
    mixed = (1 - a) * fg_power + (a * fg_energy / bg_energy) * bg_power
    return mixed.clamp_min(tiny).log10().to(fg.dtype)


def random_resized_crop(
    x: torch.Tensor,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random integer box from each patch and stretch it back to full size (bilinear).

    The boxes are the authors' (torchvision's rule, in `RandomResizedCrop_diy.get_params`), so
    that the views follow their distribution: up to 10 attempts of an area U(scale) of the patch
    and an aspect ratio bands : frames (their PIL image of a (frames, bands) array is bands
    wide) with log ~ U(log ratio), extents rounded half to even; the first box that fits is
    placed uniformly; if none fits, the centred box of the bounding ratio (the whole patch when
    its own ratio is in range). The box is resampled as PIL's bilinear resize (`_resample`).
    scale == (1, 1) returns x itself.
    """
    _check_patches(x, "x")
    _check_interval("scale", scale, high=1.0)
    _check_interval("ratio", ratio, high=math.inf)
    if scale[0] == scale[1] == 1:
        return x
    dtype = torch.float32 if x.device.type == "mps" else torch.float64  # mps has no float64
    draws = _rand((x.shape[0], 2 * _CROP_ATTEMPTS + 2), x.device, dtype, generator)
    boxes = _crop_boxes(draws, x.shape[2], x.shape[3], scale=scale, ratio=ratio)
    return _resized_crop(x, *boxes)


_CROP_ATTEMPTS = 10  # the authors' (torchvision's) number of tries before the central crop


def _crop_boxes(
    draws: torch.Tensor,
    bands: int,
    frames: int,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The authors' crop boxes from draws ~ U(0, 1) shaped (batch, 22), as float tensors of
    whole numbers (band_start, band_extent, frame_start, frame_extent), each shaped (batch,).

    Columns 0-9 set each attempt's area, 10-19 its aspect ratio, 20 and 21 the start frame and
    band of the box that is kept (uniform over the free room, ends included).
    """
    n = _CROP_ATTEMPTS
    area = (scale[0] + (scale[1] - scale[0]) * draws[:, :n]) * (bands * frames)
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = (low + (high - low) * draws[:, n : 2 * n]).exp()
    band_extent = (area * aspect).sqrt().round()  # torch.round, like Python's, is half to even
    frame_extent = (area / aspect).sqrt().round()
    fits = (
        (band_extent >= 1) & (band_extent <= bands) & (frame_extent >= 1) & (frame_extent <= frames)
    )
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first attempt that fits
    band_extent, frame_extent = (e.gather(1, first).squeeze(1) for e in (band_extent, frame_extent))
    drawn = (
        _random_start(draws[:, 2 * n + 1], bands - band_extent),
        band_extent,
        _random_start(draws[:, 2 * n], frames - frame_extent),
        frame_extent,
    )
    central = _central_box(bands, frames, ratio)  # where no attempt fits
    found = fits.any(dim=1)
    return tuple(torch.where(found, d, c) for d, c in zip(drawn, central, strict=True))


def _random_start(u: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """Uniform whole numbers in 0..room (room >= 0) from draws u ~ U(0, 1)."""
    return (u * (room + 1)).floor().minimum(room)


def _central_box(bands: int, frames: int, ratio: tuple[float, float]) -> tuple[int, ...]:
    """(band_start, band_extent, frame_start, frame_extent) of the authors' fallback box: the
    whole patch if bands / frames lies in the ratio range, else the largest centred box of the
    bounding ratio, with their float arithmetic and PIL's rounding of the box's edges."""
    if bands / frames < ratio[0]:
        band_extent, frame_extent = bands, bands / ratio[0]
    elif bands / frames > ratio[1]:
        band_extent, frame_extent = frames * ratio[1], frames
    else:
        band_extent, frame_extent = bands, frames
    band_start, frame_start = (bands - band_extent) // 2, (frames - frame_extent) // 2
    band_end, frame_end = round(band_start + band_extent), round(frame_start + frame_extent)
    band_start, frame_start = round(band_start), round(frame_start)
    return band_start, band_end - band_start, frame_start, frame_end - frame_start


def _resized_crop(
    x: torch.Tensor,
    band_start: torch.Tensor,
    band_extent: torch.Tensor,
    frame_start: torch.Tensor,
    frame_extent: torch.Tensor,
) -> torch.Tensor:
    """Each patch's box (whole numbers, shaped (batch,)) resized back to the full patch as PIL's
    bilinear resize of the cropped image does it: see `_resample`."""
    x = _resample(x, frame_start, frame_extent, dim=3)
    return _resample(x, band_start, band_extent, dim=2)


def _resample(x: torch.Tensor, start: torch.Tensor, extent: torch.Tensor, dim: int) -> torch.Tensor:
    """Stretch the window [start, start + extent) of axis `dim` over the whole axis.

    As PIL's bilinear upsampling (bin centres at half-bins): output bin k reads the window at
    (k + 0.5) * extent / n - 0.5, clamped to the window, linearly between its two neighbours.
    A full window reads every bin exactly. Gathers, unlike grid_sample, keep positions exact.
    """
    n = x.shape[dim]
    steps = torch.arange(n, device=x.device, dtype=extent.dtype) + 0.5
    last = (extent - 1)[:, None]
    position = (steps * (extent / n)[:, None] - 0.5).clamp_min(0).minimum(last)
    left = position.floor()
    weight = position - left
    right = (left + 1).minimum(last)
    view = [x.shape[0], 1, 1, 1]
    view[dim] = n
    left, right = ((i + start[:, None]).long().view(view).expand(x.shape) for i in (left, right))
    weight = weight.view(view).to(x.dtype)
    return torch.lerp(x.gather(dim, left), x.gather(dim, right), weight)


def compander(
    x: torch.Tensor, *, alpha: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scale each log-mel patch by a factor ~ U(alpha, 1) (or U(1, alpha) when alpha > 1).

    As in the reference code this is an image-contrast adjustment of the log spectrogram, not
    a dynamic-range compressor on the audio.
    """
    _check_patches(x, "x")
    _check_number("alpha", alpha, low=0.0, high=math.inf, open_low=True)
    low, high = sorted((alpha, 1.0))
    return x * _uniform(x, low, high, generator).to(x.dtype)


def gaussian_noise(
    x: torch.Tensor, *, max_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add white Gaussian noise to every bin, with a per-patch std ~ U(0, max_std)."""
    _check_patches(x, "x")
    _check_number("max_std", max_std, low=0.0, high=math.inf)
    if max_std == 0:
        return x
    std = _uniform(x, 0.0, max_std, generator).to(x.dtype)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + std * noise


def spec_augment(
    x: torch.Tensor,
    *,
    freq_width: int,
    time_width: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask one band range of width ~ U{0..freq_width} and one frame range ~ U{0..time_width}.

    Masked bins take the patch's own mean rather than zero: before normalisation zero would be
    a loud, unnatural value, and the mean leaves the patch's level unchanged.
    """
    _check_patches(x, "x")
    _check_count("freq_width", freq_width)
    _check_count("time_width", time_width)
    bands = _random_span(x, x.shape[2], freq_width, generator)
    frames = _random_span(x, x.shape[3], time_width, generator)
    masked = bands[:, None, :, None] | frames[:, None, None, :]
    return torch.where(masked, x.mean(dim=(1, 2, 3), keepdim=True), x)


def normalise(
    x: torch.Tensor, mean: float | torch.Tensor, std: float | torch.Tensor
) -> torch.Tensor:
    """(x - mean) / std with the training set's statistics: scalars, or one value per band."""
    _check_patches(x, "x")
    mean, std = (_band_stat(x, name, value) for name, value in (("mean", mean), ("std", std)))
    if not bool((std > 0).all()):
        raise ValueError("std must be positive")
    return (x - mean) / std


def augment(
    x: torch.Tensor,
    background: torch.Tensor,
    config: AugmentConfig,
    *,
    mean: float | torch.Tensor,
    std: float | torch.Tensor,
    generator: torch.Generator | None = None,
    level: torch.Tensor | None = None,
) -> torch.Tensor:
    """One augmented, normalised view of a batch of patches (background: other clips' patches,
    mixed in at `level`, see mix_back)."""
    x = mix_back(x, background, max_ratio=config.mixback, generator=generator, level=level)
    x = random_resized_crop(
        x, scale=config.crop_scale, ratio=config.crop_ratio, generator=generator
    )
    x = compander(x, alpha=config.compander, generator=generator)
    x = gaussian_noise(x, max_std=config.noise, generator=generator)
    if config.specaugment:
        x = spec_augment(
            x, freq_width=config.freq_mask, time_width=config.time_mask, generator=generator
        )
    return normalise(x, mean, std)


def two_views(
    x1: torch.Tensor,
    x2: torch.Tensor,
    bg1: torch.Tensor,
    bg2: torch.Tensor,
    config: AugmentConfig,
    *,
    mean: float | torch.Tensor,
    std: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive pair: two patches of the same clips, each with its own background and
    draws, but one mix-back level for both (the authors draw it once per pair)."""
    if x1.shape != x2.shape:
        raise ValueError(f"the two patches differ in shape: {tuple(x1.shape)}, {tuple(x2.shape)}")
    level = _uniform(x1, 0.0, 1.0, generator)
    view1 = augment(x1, bg1, config, mean=mean, std=std, generator=generator, level=level)
    view2 = augment(x2, bg2, config, mean=mean, std=std, generator=generator, level=level)
    return view1, view2


def _uniform(
    like: torch.Tensor, low: float, high: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One draw ~ U(low, high) per sample, shaped (batch, 1, 1, 1) to broadcast over a patch."""
    dtype = torch.promote_types(like.dtype, torch.float32)  # half-precision draws are coarse
    u = _rand((like.shape[0], 1, 1, 1), like.device, dtype, generator)
    return low + (high - low) * u


def _rand(
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Draws ~ U(0, 1) on `device`, from `generator` when given (it must live there too)."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the patches are on {device}: "
            "create it with torch.Generator(device=patches.device)"
        )
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def _random_span(
    x: torch.Tensor, n: int, max_width: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(batch, n) boolean masks, each a run of width ~ U{0..max_width} placed uniformly."""
    max_width = min(max_width, n)
    width = (_uniform(x, 0.0, max_width + 1, generator).floor().clamp_max(max_width)).flatten()
    room = n - width + 1
    start = (_uniform(x, 0.0, 1.0, generator).flatten() * room).floor().clamp_max(room - 1)
    index = torch.arange(n, device=x.device)
    return (index >= start[:, None]) & (index < (start + width)[:, None])


def _band_stat(x: torch.Tensor, name: str, value: float | torch.Tensor) -> torch.Tensor:
    """A scalar or per-band statistic shaped to broadcast over (batch, channels, bands, frames)."""
    stat = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if stat.ndim == 1:
        if stat.numel() != x.shape[2]:
            raise ValueError(
                f"per-band {name} has {stat.numel()} values but the patches have {x.shape[2]} bands"
            )
        stat = stat[:, None]
    elif stat.ndim != 0:
        raise ValueError(f"{name} must be a scalar or one value per band, got {tuple(stat.shape)}")
    return stat


def _check_patches(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"{name} must be a floating-point tensor shaped (batch, channels, n_mels, frames), "
            f"got {shape}"
        )


def _check_number(
    name: str, value: float, *, low: float, high: float, open_low: bool = False
) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not (low < value if open_low else low <= value) or not value <= high:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")


def _check_interval(name: str, value: tuple[float, float], *, high: float) -> None:
    ok = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    )
    if not ok or not 0 < value[0] <= value[1] <= high:
        raise ValueError(
            f"{name} must be (low, high) with 0 < low <= high <= {high}, got {value!r}"
        )


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
