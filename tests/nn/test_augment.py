"""Augmentations: exact values on constructed patches, bounds of every random draw, no-ops."""

from __future__ import annotations

import dataclasses
import math
import random
import time

import numpy as np
import pytest
import torch
from PIL import Image

from aclaudio.nn.augment import (
    AugmentConfig,
    _crop_boxes,
    _resized_crop,
    augment,
    compander,
    gaussian_noise,
    mix_back,
    normalise,
    random_resized_crop,
    spec_augment,
    two_views,
)

BANDS, FRAMES = 96, 101
FLOOR = math.log10(1.1e-8)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def seeded(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def log_mel(batch: int = 8, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Plausible log10 mel power patches: mostly between -7 and -1, never below the floor."""
    g = seeded(seed)
    x = -4 + 1.5 * torch.randn(batch, 1, BANDS, FRAMES, generator=g, dtype=torch.float64)
    return x.clamp_min(FLOOR).to(dtype)


# --- mix-back ---------------------------------------------------------------------------------


def test_mix_back_matches_the_formula_and_its_energy_ratio_is_bounded():
    batch, max_ratio = 256, 0.05
    fg = torch.full((batch, 1, BANDS, FRAMES), -2.0, dtype=torch.float64)  # power 0.01 everywhere
    bg = torch.full_like(fg, FLOOR)
    bg[..., ::2] = 0.0  # power 1 in even frames, the floor in odd ones
    out = mix_back(fg, bg, max_ratio=max_ratio, generator=seeded())

    mixed, fg_power, bg_power = 10**out, 10**fg, 10**bg
    bg_share = bg_power / bg_power.mean(dim=(1, 2, 3), keepdim=True)
    # mixed = 0.01 * (1 - a + a * bg_share): recover a from one loud and one quiet bin ...
    loud, quiet = mixed[:, 0, 0, 0], mixed[:, 0, 0, 1]
    a = (loud - quiet) / (0.01 * (bg_share[:, 0, 0, 0] - bg_share[:, 0, 0, 1]))
    a = a.view(-1, 1, 1, 1)
    # ... and every other bin must follow from it.
    torch.testing.assert_close(mixed, 0.01 * (1 - a + a * bg_share), rtol=1e-9, atol=0)
    ratio = (mixed - (1 - a) * fg_power).sum(dim=(1, 2, 3)) / fg_power.sum(dim=(1, 2, 3))
    torch.testing.assert_close(ratio, a.flatten())
    assert ratio.min() >= 0 and ratio.max() <= max_ratio
    assert ratio.min() < 0.1 * max_ratio and ratio.max() > 0.9 * max_ratio  # U(0, max_ratio)


def test_mix_back_does_not_depend_on_the_background_level():
    fg, bg = log_mel(seed=1, dtype=torch.float64), log_mel(seed=2, dtype=torch.float64)
    quiet = mix_back(fg, bg, max_ratio=0.05, generator=seeded())
    loud = mix_back(fg, bg + 3, max_ratio=0.05, generator=seeded())  # 1000 times the power
    torch.testing.assert_close(quiet, loud)
    assert not torch.allclose(quiet, fg, atol=1e-3)


def test_mix_back_with_zero_ratio_or_zero_draw_returns_the_foreground():
    fg, bg = log_mel(seed=1), log_mel(seed=2)
    assert torch.equal(mix_back(fg, bg, max_ratio=0.0), fg)
    # A draw too small to matter (a * bg / fg < 1e-12 in every bin) goes through the mixing.
    torch.testing.assert_close(mix_back(fg, bg, max_ratio=1e-20, generator=seeded()), fg)


def test_mix_back_stays_finite_on_silence():
    silence = torch.full((2, 1, BANDS, FRAMES), FLOOR)
    out = mix_back(silence, silence - 50, max_ratio=0.05, generator=seeded())
    assert torch.isfinite(out).all()


def test_mix_back_rejects_a_mismatched_background():
    with pytest.raises(ValueError, match="background shape"):
        mix_back(log_mel(4), log_mel(3), max_ratio=0.05)


# --- random resized crop ----------------------------------------------------------------------


CROP = {"scale": (0.8, 1.0), "ratio": (3 / 4, 4 / 3)}


def reference_box(rng, bands: int, frames: int, scale, ratio) -> tuple[int, int, int, int]:
    """The authors' crop box, rewritten from its rules in Python floats: their PIL image of a
    (frames, bands) array is `bands` wide and `frames` high. Returns (band_start, band_extent,
    frame_start, frame_extent). `rng` needs uniform(a, b) and randint(a, b) (ends included)."""
    for _ in range(10):
        area = rng.uniform(*scale) * bands * frames
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        wide, high = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if wide <= bands and high <= frames:
            top = rng.randint(0, frames - high)
            return rng.randint(0, bands - wide), wide, top, high
    # No attempt fits: the centred box of the bounding ratio, or the whole patch.
    wide, high = bands, frames
    if bands / frames < min(ratio):
        high = bands / min(ratio)
    elif bands / frames > max(ratio):
        wide = frames * max(ratio)
    left, top = (bands - wide) // 2, (frames - high) // 2
    edges = [round(v) for v in (left, top, left + wide, top + high)]  # PIL's crop rounds them
    return edges[0], edges[2] - edges[0], edges[1], edges[3] - edges[1]


class Replay:
    """Feeds reference_box one row of the draws table that _crop_boxes reads."""

    def __init__(self, row: list[float]) -> None:
        self.uniforms = iter(v for pair in zip(row[:10], row[10:20], strict=True) for v in pair)
        self.integers = iter(row[20:22])

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * next(self.uniforms)

    def randint(self, low: int, high: int) -> int:
        return low + min(int(next(self.integers) * (high - low + 1)), high - low)


def boxes_of(draws: torch.Tensor, bands: int, frames: int, **crop) -> list[tuple[int, ...]]:
    columns = _crop_boxes(draws, bands, frames, **crop)
    for column in columns:
        assert torch.equal(column, column.round())  # whole numbers
    return list(zip(*(c.long().tolist() for c in columns), strict=True))


def pil_resized_crop(patch: torch.Tensor, box: tuple[int, ...]) -> torch.Tensor:
    """The authors' resampling: PIL's crop and bilinear resize of a (frames, bands) image."""
    band_start, band_extent, frame_start, frame_extent = box
    bands, frames = patch.shape
    image = Image.fromarray(patch.T.numpy().astype(np.float32), mode="F")
    image = image.crop(
        (band_start, frame_start, band_start + band_extent, frame_start + frame_extent)
    )
    return torch.from_numpy(np.array(image.resize((bands, frames), Image.BILINEAR)).T.copy())


@pytest.mark.parametrize("ratio", [(1.0, 1.0), (3 / 4, 4 / 3)])
def test_crop_of_the_whole_patch_is_exactly_the_identity(ratio):
    x = log_mel(16)
    assert torch.equal(random_resized_crop(x, scale=(1.0, 1.0), ratio=ratio, generator=seeded()), x)
    whole = [torch.full((16,), v, dtype=torch.float64) for v in (0, BANDS, 0, FRAMES)]
    assert torch.equal(_resized_crop(x, *whole), x)


@pytest.mark.parametrize(("bands", "frames"), [(BANDS, FRAMES), (64, 64)])
def test_crop_resamples_a_box_as_pil_does(bands, frames):
    boxes = [
        (0, bands, 0, frames),  # whole
        (0, bands - 1, 1, frames - 1),
        (3, bands - 17, 10, frames - 12),
        (bands // 2, bands // 3, frames // 5, frames // 2),
        (0, 1, frames - 1, 1),  # a single bin
        (bands - 1, 1, 0, frames),  # one band, every frame
        (7, bands - 7, 0, frames - 20),  # against the far band edge
    ]
    x = torch.randn(len(boxes), 2, bands, frames, generator=seeded(5))
    columns = [torch.tensor(c, dtype=torch.float64) for c in zip(*boxes, strict=True)]
    out = _resized_crop(x, *columns)
    for patch, crop, box in zip(x, out, boxes, strict=True):
        for channel in range(2):
            expected = pil_resized_crop(patch[channel], box)
            torch.testing.assert_close(crop[channel], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("bands", "frames", "crop"),
    [
        (BANDS, FRAMES, CROP),
        (64, 64, CROP),
        (40, FRAMES, {"scale": (0.3, 1.0), "ratio": (1 / 3, 3.0)}),  # some fall back
        (BANDS, FRAMES, {"scale": (0.5, 0.9), "ratio": (1.0, 2.0)}),  # wider in bands
    ],
)
def test_crop_boxes_follow_the_authors_rule_draw_by_draw(bands, frames, crop):
    draws = torch.rand(4000, 22, generator=seeded(1), dtype=torch.float64)
    expected = [reference_box(Replay(row), bands, frames, **crop) for row in draws.tolist()]
    assert boxes_of(draws, bands, frames, **crop) == expected


def box_statistics(
    boxes: list[tuple[int, ...]], bands: int, frames: int
) -> dict[str, torch.Tensor]:
    b = torch.tensor(boxes, dtype=torch.float64)
    area = b[:, 1] * b[:, 3] / (bands * frames)
    full = ((b[:, 1] == bands) | (b[:, 3] == frames)).double()
    extents = {"band extent": b[:, 1], "frame extent": b[:, 3]}
    starts = {"band start": b[:, 0], "frame start": b[:, 2]}
    return {"area": area, "full axis": full} | extents | starts


@pytest.mark.parametrize(("bands", "frames"), [(BANDS, FRAMES), (64, 64)])
def test_crop_box_statistics_match_an_independent_sampler(bands, frames):
    """200,000 boxes each from the crop's own draws and from Python's random module."""
    n = 200_000
    rng = random.Random(0)
    reference = [reference_box(rng, bands, frames, **CROP) for _ in range(n)]
    draws = torch.rand(n, 22, generator=seeded(2), dtype=torch.float64)
    ours = box_statistics(boxes_of(draws, bands, frames, **CROP), bands, frames)
    theirs = box_statistics(reference, bands, frames)
    for name, value in ours.items():
        other = theirs[name]
        # Two independent samples: the difference of means has this standard error (CLT).
        error = math.sqrt((value.var() + other.var()).item() / n)
        assert abs(value.mean() - other.mean()) < 5 * error, name
    # The authors' boxes, unlike the former clipped ones, rarely span a whole axis.
    assert 0.85 < ours["area"].mean() < 0.89 and ours["full axis"].mean() < 0.3


@pytest.mark.parametrize(
    ("bands", "frames", "ratio", "box"),
    [
        (30, FRAMES, (3 / 4, 4 / 3), (0, 30, 30, 40)),  # every band, 40 frames in the middle
        (31, FRAMES, (3 / 4, 4 / 3), (0, 31, 29, 41)),  # 41.33 frames from 29: PIL rounds
        (120, 40, (3 / 4, 4 / 3), (33, 53, 0, 40)),  # 53.33 bands from 33, every frame
        (BANDS, FRAMES, (4.0, 5.0), (0, BANDS, 38, 24)),  # a ratio that never fits
    ],
)
def test_crop_falls_back_to_a_centred_box_of_the_bounding_ratio(bands, frames, ratio, box):
    # No attempt can fit: the smallest box is too many bands (or frames) across.
    x = torch.randn(8, 1, bands, frames, generator=seeded(3))
    out = random_resized_crop(x, scale=(0.8, 1.0), ratio=ratio, generator=seeded())
    columns = [torch.full((8,), v, dtype=torch.float64) for v in box]
    assert torch.equal(out, _resized_crop(x, *columns))
    assert reference_box(random.Random(0), bands, frames, (0.8, 1.0), ratio) == box


def test_crop_falls_back_to_the_whole_patch_when_its_ratio_is_in_range():
    # Aspect draws of 1 ask for 4/3 as many bands as frames: at least 102 bands, never fitting.
    draws = torch.rand(64, 22, generator=seeded(4), dtype=torch.float64)
    draws[:, 10:20] = 1.0
    assert set(boxes_of(draws, BANDS, FRAMES, **CROP)) == {(0, BANDS, 0, FRAMES)}
    draws[:, [5, 15]] = torch.tensor([0.0, 0.5], dtype=torch.float64)  # 0.8 of it, square
    draws[:, [6, 16]] = torch.tensor([0.5, 0.5], dtype=torch.float64)  # would fit too
    assert {b[1::2] for b in boxes_of(draws, BANDS, FRAMES, **CROP)} == {(88, 88)}  # the first


def test_crop_is_reproducible_from_the_generator_and_differs_per_sample():
    x = log_mel(32)
    first = random_resized_crop(x, **CROP, generator=seeded(7))
    again = random_resized_crop(x, **CROP, generator=seeded(7))
    other = random_resized_crop(x, **CROP, generator=seeded(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    crops = random_resized_crop(x[:1].expand_as(x), **CROP, generator=seeded(7))
    assert crops.flatten(1).unique(dim=0).shape[0] > 20  # one patch, a box per sample


# --- compander, noise, SpecAugment, normalisation ---------------------------------------------


@pytest.mark.parametrize(("alpha", "low", "high"), [(0.75, 0.75, 1.0), (1.25, 1.0, 1.25)])
def test_compander_scales_each_patch_by_one_factor_in_range(alpha, low, high):
    x = log_mel(256, dtype=torch.float64)
    factor = compander(x, alpha=alpha, generator=seeded()) / x
    per_patch = factor[:, :1, :1, :1]
    torch.testing.assert_close(factor, per_patch.expand_as(factor))
    assert per_patch.min() >= low and per_patch.max() <= high
    assert per_patch.min() < low + 0.1 * (high - low) and per_patch.max() > high - 0.1 * (
        high - low
    )


def test_compander_at_one_is_the_identity():
    x = log_mel()
    assert torch.equal(compander(x, alpha=1.0, generator=seeded()), x)


def test_noise_std_per_patch_is_drawn_up_to_the_maximum():
    x = log_mel(128, dtype=torch.float64)
    noise = gaussian_noise(x, max_std=0.01, generator=seeded()) - x
    std = noise.std(dim=(1, 2, 3))
    # 9696 bins estimate a std within about 1 % (one standard error is 0.7 %).
    assert std.max() <= 0.01 * 1.04
    assert std.max() > 0.009 and std.min() < 0.001
    assert noise.mean(dim=(1, 2, 3)).abs().max() < 4 * 0.01 / math.sqrt(BANDS * FRAMES)


def test_zero_noise_is_the_identity():
    x = log_mel()
    assert torch.equal(gaussian_noise(x, max_std=0.0, generator=seeded()), x)


def test_spec_augment_fills_whole_bands_and_frames_with_the_patch_mean():
    x = torch.randn(64, 1, BANDS, FRAMES, generator=seeded(3))
    out = spec_augment(x, freq_width=20, time_width=15, generator=seeded())
    changed = (out != x)[:, 0]
    bands, frames = changed.all(dim=2), changed.all(dim=1)
    assert torch.equal(changed, bands[:, :, None] | frames[:, None, :])
    fill = x.mean(dim=(1, 2, 3))[:, None, None].expand_as(out[:, 0])
    assert torch.equal(out[:, 0][changed], fill[changed])
    for mask, limit in ((bands, 20), (frames, 15)):
        widths = mask.sum(dim=1)
        assert widths.max() <= limit and widths.max() >= limit - 3 and widths.min() <= 3
        for row in mask[widths > 0]:  # one contiguous run
            where = row.nonzero().flatten()
            assert where[-1] - where[0] + 1 == len(where)


def test_spec_augment_with_zero_widths_is_the_identity():
    x = log_mel()
    assert torch.equal(spec_augment(x, freq_width=0, time_width=0, generator=seeded()), x)


def test_normalise_with_scalar_and_per_band_statistics():
    g = seeded(4)
    x = 2.5 + 3.0 * torch.randn(32, 1, BANDS, FRAMES, generator=g, dtype=torch.float64)
    out = normalise(x, x.mean().item(), x.std().item())
    assert abs(out.mean().item()) < 1e-9 and abs(out.std().item() - 1) < 1e-9

    scale = torch.linspace(0.5, 4, BANDS, dtype=torch.float64)[:, None]
    shift = torch.linspace(-8, 0, BANDS, dtype=torch.float64)[:, None]
    y = shift + scale * x
    mean, std = y.mean(dim=(0, 1, 3)), y.std(dim=(0, 1, 3))
    per_band = normalise(y, mean, std)
    torch.testing.assert_close(per_band.mean(dim=(0, 1, 3)), torch.zeros_like(mean))
    torch.testing.assert_close(per_band.std(dim=(0, 1, 3)), torch.ones_like(std))


def test_normalise_rejects_bad_statistics():
    x = log_mel()
    with pytest.raises(ValueError, match="95 values but the patches have 96 bands"):
        normalise(x, torch.zeros(95), 1.0)
    with pytest.raises(ValueError, match="std must be positive"):
        normalise(x, 0.0, torch.zeros(BANDS))
    with pytest.raises(ValueError, match="scalar or one value per band"):
        normalise(x, torch.zeros(2, 2), 1.0)


# --- the views --------------------------------------------------------------------------------


STATS = {"mean": -4.0, "std": 1.5}


def test_augment_applies_the_paper_order():
    x, bg = log_mel(seed=1), log_mel(seed=2)
    config = AugmentConfig(specaugment=True)
    g = seeded()
    expected = mix_back(x, bg, max_ratio=0.05, generator=g)
    expected = random_resized_crop(expected, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3), generator=g)
    expected = compander(expected, alpha=0.75, generator=g)
    expected = gaussian_noise(expected, max_std=0.01, generator=g)
    expected = spec_augment(expected, freq_width=20, time_width=20, generator=g)
    expected = normalise(expected, -4.0, 1.5)
    assert torch.equal(augment(x, bg, config, **STATS, generator=seeded()), expected)


def test_no_augmentation_is_just_normalisation():
    x, bg = log_mel(seed=1), log_mel(seed=2)
    out = augment(x, bg, AugmentConfig.off(), **STATS, generator=seeded())
    assert torch.equal(out, normalise(x, -4.0, 1.5))


def test_views_are_reproducible_from_the_seed_and_differ_between_views_and_seeds():
    x, bg = log_mel(seed=1), log_mel(seed=2)
    config = AugmentConfig()
    first = two_views(x, x, bg, bg, config, **STATS, generator=seeded(7))
    again = two_views(x, x, bg, bg, config, **STATS, generator=seeded(7))
    other = two_views(x, x, bg, bg, config, **STATS, generator=seeded(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.allclose(first[0], other[0], atol=1e-3)
    differs = (first[0] - first[1]).abs().amax(dim=(1, 2, 3))
    assert (differs > 1e-2).all()  # every sample's two views differ


def test_the_two_views_of_a_clip_share_one_mixback_level():
    """Only mix-back on: the same patch and background give the same view twice, as the authors
    draw the level once per positive pair; the clips of the batch get levels of their own."""
    x, bg = log_mel(seed=1), log_mel(seed=2)
    config = dataclasses.replace(AugmentConfig.off(), mixback=0.05)
    view1, view2 = two_views(x, x, bg, bg, config, **STATS, generator=seeded())
    assert torch.equal(view1, view2)
    change = (view1 - normalise(x, **STATS)).abs().amax(dim=(1, 2, 3))
    assert (change > 0).all() and change.unique().numel() == len(x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_views_keep_dtype_and_device(dtype, device):
    x, bg = log_mel(4, seed=1).to(device, dtype), log_mel(4, seed=2).to(device, dtype)
    config = AugmentConfig(specaugment=True)
    with torch.no_grad():
        views = two_views(x, x, bg, bg, config, mean=torch.full((BANDS,), -4.0), std=1.5)
    for view in views:
        assert view.dtype == dtype and view.device == x.device and view.shape == x.shape
        assert torch.isfinite(view).all()
        assert abs(view.float().mean().item()) < 1  # normalised around the given mean


def test_a_generator_on_another_device_is_a_clear_error():
    x = log_mel(2)
    other = torch.device("meta")
    with pytest.raises(ValueError, match="generator is on"):
        compander(x.to(other), alpha=0.75, generator=seeded())


def test_bad_settings_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="mixback"):
        AugmentConfig(mixback=-0.1)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.9, 0.8))
    with pytest.raises(ValueError, match="crop_ratio"):
        AugmentConfig(crop_ratio=(0, 1))
    with pytest.raises(ValueError, match="compander"):
        AugmentConfig(compander=0)
    with pytest.raises(ValueError, match="time_mask"):
        AugmentConfig(time_mask=2.5)
    with pytest.raises(ValueError, match=r"shaped \(batch, channels, n_mels, frames\)"):
        compander(torch.zeros(BANDS, FRAMES), alpha=0.75)
    with pytest.raises(ValueError, match="floating-point"):
        gaussian_noise(torch.zeros(2, 1, 4, 4, dtype=torch.long), max_std=0.1)
    with pytest.raises(ValueError, match="two patches differ"):
        two_views(log_mel(4), log_mel(3), log_mel(4), log_mel(3), AugmentConfig(), **STATS)


def test_config_from_lists_is_hashable_and_equal_to_the_default():
    config = AugmentConfig(crop_scale=[0.8, 1.0], crop_ratio=[3 / 4, 4 / 3])
    assert config == AugmentConfig() and hash(config) == hash(AugmentConfig())


def test_a_paper_batch_takes_well_under_a_second():
    x, bg = log_mel(128, seed=1), log_mel(128, seed=2)
    config = AugmentConfig()
    g = seeded()
    two_views(x, x, bg, bg, config, **STATS, generator=g)  # warm up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        two_views(x, x, bg, bg, config, **STATS, generator=g)
        times.append(time.perf_counter() - start)
    print(f"two_views on 128 x 1 x {BANDS} x {FRAMES}: best {min(times) * 1e3:.1f} ms")
    assert min(times) < 1.0


def test_a_box_that_rounds_to_nothing_never_fits():
    """An area so small that an extent rounds to 0 is not a box (torchvision requires at least
    one pixel): every attempt fails and the central fallback, here the whole patch, is used."""
    x = torch.rand(3, 1, 8, 8, generator=seeded(2))
    out = random_resized_crop(x, scale=(1e-4, 1e-4), ratio=(3 / 4, 4 / 3), generator=seeded())
    assert torch.allclose(out, x, atol=1e-6)
