"""Export of a pretraining run's encoder and the HEAR API over the exported file."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tone

from aclaudio import hear
from aclaudio.data import audio as audio_files
from aclaudio.data import features, synth
from aclaudio.evaluation import embeddings
from aclaudio.export import export_encoder
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import batches, config, results, runs

ROWS = 3  # test clips of the smoke data embedded both ways


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A one-epoch smoke run, its export (encoder.pt in root) and the export's summary."""
    root = tmp_path_factory.mktemp("hear")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    settings = dict(data_dir=str(root / "data"), subset="all", epochs=1)
    run = pretrain(
        config.profile_config("pretrain", "smoke", **settings),
        runs_dir=root / "runs",
        progress=False,
    )
    summary = export_encoder(run, root / "encoder.pt", progress=False)
    return root, run, summary


@pytest.fixture(scope="module")
def model(exported):
    return hear.load_model(exported[0] / "encoder.pt")


def reference(run: runs.Run, n_clips: int):
    """The library's own evaluation path (embeddings.embed, float32) on the first test clips, and
    their audio as the cache decodes it. The cache stores float16, the export works in float32:
    the clips' rows get their float32 log-mels from the same front end."""
    model, data, device = embeddings.load_pretrained(run, progress=False)
    cache = data.cache
    rows = data.test_rows[:n_clips]
    cache.data = np.array(cache.data, dtype=np.float32)
    preset = cache.preset
    audio = []
    for row in rows:
        path = cache.clips["path"].iat[row]
        start, length = cache.clips["offset"].iat[row], cache.clips["length"].iat[row]
        cache.data[start : start + length] = audio_files.clip_log_mel(path, preset).T
        audio.append(audio_files.decode_audio(path, preset.sample_rate))
    emb, clip_of_patch = embeddings.embed(
        model.encoder, dataclasses.replace(data, cache=cache), rows, device, amp=False
    )
    return audio, [emb[clip_of_patch == r] for r in rows]


def test_the_export_is_plain_and_self_describing(exported, tmp_path, capsys):
    root, run, summary = exported
    state = torch.load(root / "encoder.pt", weights_only=True)
    assert state["encoder"]["name"] == "small" and state["run"] == run.id
    assert state["config_hash"] == config.config_hash(run.config)
    assert state["preset"] == dataclasses.asdict(features.PRESETS["cpu"])
    assert state["summary"]["test_micro"] == run.summary()["test_micro"]
    assert state["commit"] == results.load_results(run.path.parent)["commit"].iloc[-1]
    assert not any(k.startswith("head") for k in state["encoder"]["state_dict"])
    mean, std = batches.TrainingData.load(run.config, progress=False).normaliser(
        torch.device("cpu"), per_band=False
    )
    assert state["normalisation"] == {"mean": float(mean), "std": float(std)}
    assert summary["dim"] == 128 and summary["epoch"] == 0

    code, cli_summary, _ = run_cli(capsys, "export", run.path, "--to", tmp_path / "e.pt")
    assert code == 0 and cli_summary["ok"] and cli_summary["run"] == run.id
    again = torch.load(tmp_path / "e.pt", weights_only=True)
    assert all(
        torch.equal(again["encoder"]["state_dict"][k], v)
        for k, v in state["encoder"]["state_dict"].items()
    )


def test_the_model_card_says_what_the_encoder_is_and_its_code_runs(exported, monkeypatch):
    root, run, summary = exported
    card = (root / "encoder.md").read_text()
    assert summary["card"] == str(root / "encoder.md")
    done = run.summary()
    mid, low, high = (100 * done[f"test_micro{end}"] for end in ("", "_low", "_high"))
    assert f"{mid:.1f} % (95 % Wilson interval {low:.1f} to {high:.1f})" in card
    assert f"epoch 0 of run `{run.id}`" in card and "profile `smoke`, seed 0, 1 epoch of" in card
    assert f"{run.config.objective} (alpha {run.config.loss.alpha}, margin" in card
    monkeypatch.chdir(root)
    namespace = {"audio": white_noise(2, 16000)}
    exec(card.split("```")[1], namespace)
    assert namespace["scene"].shape == (2, 128) and namespace["state"]["run"] == run.id


def test_export_errors_are_one_line(exported, tmp_path, capsys):
    root, run, _ = exported
    supervised = runs.open_run(config.profile_config("supervised", "smoke"), tmp_path / "r")
    code, summary, _ = run_cli(capsys, "export", supervised.path, "--to", tmp_path / "e.pt")
    assert (
        code == 1
        and summary["error"]
        == f"{supervised.path}: not a pretraining run, so it has no encoder to export"
    )
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=f"{tmp_path / 'other.pt'}: not an aclaudio encoder"):
        hear.load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match=f"{tmp_path / 'text.pt'}: not an aclaudio encoder"):
        hear.load_model(tmp_path / "text.pt")


def white_noise(n_sounds: int, n_samples: int) -> torch.Tensor:
    """The HEAR validator's test audio: uniform white noise in [-1, 1), here seeded."""
    return torch.rand(n_sounds, n_samples, generator=torch.Generator().manual_seed(0)) * 2 - 1


def padded_log_mel(audio: torch.Tensor, preset: features.Preset, frames: int) -> torch.Tensor:
    """The log-mel of `audio` (mean removed, divided by its peak plus the headroom) continued by
    `frames` frames of silence both ways, computed without aclaudio.hear: frame f of the sound is
    frame f + frames here."""
    wave = audio - audio.mean(dim=1, keepdim=True)
    wave = wave / (wave.abs().amax(dim=1, keepdim=True) + preset.headroom)
    return features.log_mel(F.pad(wave, (frames * preset.hop_length,) * 2), preset)


def embed_patches(model, mel: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """(n_sounds, n_patches, dim): the model on the patches mel[..., index], index (n, frames)."""
    with torch.no_grad():
        emb = model(mel[:, :, index].permute(0, 2, 1, 3).flatten(0, 1))
    return emb.reshape(len(mel), len(index), -1)


CHILD = """
import sys, torch
from aclaudio import hear
model = hear.load_model(sys.argv[1])
clips, noise = torch.load(sys.argv[2])
out = {"attrs": [model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size],
       "scene": [hear.get_scene_embeddings(c[None], model) for c in clips], "timestamp": []}
for sound in noise:
    emb, ms = hear.get_timestamp_embeddings(sound[None], model)
    print(f"{len(sound) / model.sample_rate} s: {ms.shape[1]} timestamps (ms) {ms[0].tolist()}")
    out["timestamp"].append(emb)
torch.save(out, sys.argv[3])
"""


def test_a_fresh_process_without_the_data_embeds_as_the_library(exported, tmp_path):
    """Outside the checkout and without the dataset: scene embeddings as the library's clip
    embeddings, and timestamps every 50 ms from 5 ms to the end of 1.07 s and 4.0 s of audio."""
    root, run, _ = exported
    audio, expected = reference(run, ROWS)
    noise = [white_noise(1, n)[0] for n in (17120, 64000)]
    files = [root / "encoder.pt", tmp_path / "clips.pt", tmp_path / "out.pt"]
    torch.save((audio, noise), files[1])
    moved = tmp_path / "moved-data"
    shutil.move(root / "data", moved)  # the child cannot reach the dataset nor its cache
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *files],
            check=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
    finally:
        shutil.move(moved, root / "data")
    print(child.stdout)  # shown by pytest -rP
    assert child.stdout.splitlines() == [
        f"{seconds} s: {n} timestamps (ms) {[5.0 + 50 * k for k in range(n)]}"
        for seconds, n in ((1.07, 22), (4.0, 80))
    ]
    out = torch.load(files[2])
    assert out["attrs"] == [16000, 128, 128]
    for scene, want in zip(out["scene"], expected, strict=True):
        assert scene.dtype == torch.float32 and scene.shape == (1, 128)
        assert torch.allclose(scene[0], torch.from_numpy(want.mean(0)), rtol=1e-4, atol=1e-5)
    model = hear.load_model(root / "encoder.pt")
    for emb, sound in zip(out["timestamp"], noise, strict=True):
        want = hear.get_timestamp_embeddings(sound[None], model)[0]
        assert torch.allclose(emb, want, rtol=1e-5, atol=1e-6)


def test_the_hear_contract(model):
    """Timestamps on a regular grid, each the centre of a patch of the sound continued by
    silence; the scene embedding is the mean of the library's evaluation patches."""
    preset, frames = model.preset, model.preset.patch_frames  # cpu: 10 ms frames, 64 a patch
    assert not model.training and model.timestamp_hop == 5  # 50 ms
    clips = torch.tensor(np.stack([tone(f, 1.5, 16000) for f in (300, 900, 2000)])).float()
    # 1.5 s: 151 frames; 64 frames have no middle one, so centres lie half a frame after one
    emb, stamps = hear.get_timestamp_embeddings(clips, model)
    centres = 5.0 + 50 * np.arange(30)  # to 1455 ms: the next, 1505 ms, is past the end
    assert emb.shape == (3, 30, 128) and emb.dtype == stamps.dtype == torch.float32
    assert torch.equal(stamps, torch.tensor(centres).float().expand(3, 30))
    mel = padded_log_mel(clips, preset, frames)  # frame 0 of the sound is frame 64 here
    first = (centres / 10 - (frames - 1) / 2).astype(int) + frames  # -31, -26, ... + 64
    want = embed_patches(model, mel, first[:, None] + np.arange(frames))
    assert torch.allclose(emb, want, rtol=1e-4, atol=1e-5)
    scene = hear.get_scene_embeddings(clips, model)  # patches at 0, 32, 64; none at the end (87)
    library = embed_patches(model, mel, np.array([[0], [32], [64]]) + np.arange(frames) + 64)
    assert scene.shape == (3, 128) and torch.allclose(scene, library.mean(1), atol=1e-5)
    short = clips[:, :4000]  # 26 frames, repeated to fill a patch for the scene embedding
    repeated = embed_patches(model, padded_log_mel(short, preset, 0), np.arange(frames)[None] % 26)
    assert torch.allclose(hear.get_scene_embeddings(short, model), repeated[:, 0], atol=1e-5)
    assert not torch.equal(emb[0, 2], emb[1, 2])  # different sounds, different embeddings


def check_timestamps(ms: np.ndarray, seconds: float) -> None:
    """HEAR's validator's rules for timestamps (hearvalidator/validate.py), its warnings taken
    as errors: regular (no spacing over 1 ms from their mean), at most 50 ms apart, the first
    within one spacing of 0, the last within one spacing (and 50 ms) of the end, none beyond."""
    assert ms.dtype.kind == "f" and (ms >= 0).all() and ms.max() <= 1000 * seconds
    if ms.shape[1] > 1:
        spacing = np.diff(ms)
        assert (spacing > 0).all() and np.abs(spacing - spacing.mean()).max() <= 1
        assert spacing.max() <= 50 and ms.min() <= spacing.mean()
        assert ms.max() >= 1000 * seconds - min(spacing.mean(), 50)


@pytest.mark.parametrize(
    ("n_samples", "n_timestamps"),  # the validator's 1.07, 1.98 and 4.0 s; short and long audio
    [(17120, 22), (31680, 40), (64000, 80), (1600, 2), (400, 1), (320000, 400)],
)  # 0.1 s, one analysis window (25 ms) and 20 s
def test_the_hear_validators_rules(model, n_samples, n_timestamps):
    assert {"load_model", "get_scene_embeddings", "get_timestamp_embeddings"} <= set(vars(hear))
    assert isinstance(model, torch.nn.Module) and model.sample_rate in (16000, 22050, 44100, 48000)
    sizes = (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size)
    assert all(type(size) is int for size in sizes)
    audio = white_noise(3, n_samples)
    emb, ms = hear.get_timestamp_embeddings(audio, model)
    assert emb.dtype == torch.float32 and ms.dtype.is_floating_point
    assert emb.shape == (3, n_timestamps, sizes[2]) and ms.shape == (3, n_timestamps)
    check_timestamps(ms.numpy(), n_samples / model.sample_rate)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.dtype == torch.float32 and scene.shape == (3, sizes[1])
    for i, sound in enumerate(audio):  # batch independence
        alone, alone_ms = hear.get_timestamp_embeddings(sound[None], model)
        assert torch.allclose(alone[0], emb[i], rtol=1e-5, atol=1e-6)
        assert torch.equal(alone_ms[0], ms[i])
        alone = hear.get_scene_embeddings(sound[None], model)[0]
        assert torch.allclose(alone, scene[i], rtol=1e-5, atol=1e-6)
    again, again_ms = hear.get_timestamp_embeddings(audio, model)  # determinism
    assert torch.equal(again, emb) and torch.equal(again_ms, ms)
    assert torch.equal(hear.get_scene_embeddings(audio, model), scene)


def test_the_timestamp_hop_is_a_setting(exported):
    """A finer hop adds timestamps between the default's: the same patches at the shared ones;
    the scene embedding does not depend on it. A hop that is not whole frames is refused."""
    path = exported[0] / "encoder.pt"
    coarse, fine = hear.load_model(path), hear.load_model(path, timestamp_hop=1)
    audio = white_noise(2, 16000)
    emb, ms = hear.get_timestamp_embeddings(audio, coarse)
    fine_emb, fine_ms = hear.get_timestamp_embeddings(audio, fine)
    assert fine_ms[0].tolist() == [5.0 + 10 * k for k in range(100)]
    assert torch.equal(fine_ms[:, ::5], ms)
    assert torch.allclose(fine_emb[:, ::5], emb, rtol=1e-5, atol=1e-6)
    assert torch.equal(*(hear.get_scene_embeddings(audio, m) for m in (coarse, fine)))
    message = r"timestamp_hop must be a positive whole number of frames \(10 ms each\), got "
    for bad in (0, -5, 2.5, "5", True):
        with pytest.raises(ValueError, match=message + re.escape(repr(bad)) + "$"):
            fine.timestamp_hop = bad
    with pytest.raises(ValueError, match="got 0$"):
        hear.load_model(path, timestamp_hop=0)


def test_load_model_without_a_path_loads_the_shipped_encoder(exported, tmp_path, monkeypatch):
    """HEAR's validator calls load_model() without a path: it raised TypeError."""
    assert hear.SHIPPED == Path(hear.__file__).parent / "encoders" / "acl-cpu-seed0.pt"
    root, run, _ = exported
    shipped = tmp_path / "encoders" / "acl-cpu-seed0.pt"
    monkeypatch.setattr(hear, "SHIPPED", shipped)
    message = rf"shipped encoder {re.escape(str(shipped))} .* `aclaudio export RUN_DIR --to "
    with pytest.raises(FileNotFoundError, match=message):
        hear.load_model()
    export_encoder(run, shipped, progress=False)
    audio, by_path = white_noise(2, 16000), hear.load_model(root / "encoder.pt")
    default = hear.get_timestamp_embeddings(audio, hear.load_model())[0]
    assert torch.equal(default, hear.get_timestamp_embeddings(audio, by_path)[0])


def test_embed_any_folder_or_csv_of_audio(exported, tmp_path, capsys):
    """`aclaudio embed FILE --audio DIR|CSV`: every file embedded as get_scene_embeddings does,
    a manifest row per file, and a file that cannot be used named, never silently dropped."""
    import soundfile as sf

    root, _, _ = exported
    folder = tmp_path / "sounds"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", tone(440, 1.0, 16000), 16000)
    sf.write(folder / "sub" / "b.flac", tone(880, 0.7, 22050), 22050)  # another rate: resampled
    sf.write(folder / "silent.wav", np.zeros(8000), 16000)
    sf.write(folder / "tick.wav", tone(440, 0.01, 16000), 16000)  # 160 samples: no full window
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "emb.npz"
    code, summary, text = run_cli(
        capsys, "embed", root / "encoder.pt", "--audio", folder, "--out", out
    )
    assert code == 0 and summary["files"] == 4 and summary["embedded"] == 2
    assert summary["bad_files"] == [
        {"path": str(folder / "silent.wav"), "problem": "all-silent (every sample is zero)"},
        {
            "path": str(folder / "tick.wav"),
            "problem": "too short: 160 samples, less than one analysis window (400 samples)",
        },
    ]
    assert "silent.wav: all-silent" in text
    manifest = pd.read_csv(out.with_suffix(".csv"))
    assert manifest["path"].tolist() == [
        str(folder / n) for n in ("a.wav", "silent.wav", "sub/b.flac", "tick.wav")
    ]
    assert manifest["row"].tolist() == [0, -1, 1, -1]
    scene = np.load(out)["scene"]
    model = hear.load_model(root / "encoder.pt")
    wave = torch.from_numpy(sf.read(folder / "a.wav", dtype="float32")[0])  # as written
    expected = hear.get_scene_embeddings(wave[None], model)
    np.testing.assert_allclose(scene[0], expected[0].numpy(), rtol=1e-6)

    listing = tmp_path / "list.csv"
    listing.write_text("path\nsounds/sub/b.flac\n")
    code, again, _ = run_cli(
        capsys, "embed", root / "encoder.pt", "--audio", listing, "--out", tmp_path / "two.npz"
    )
    assert code == 0 and again["embedded"] == 1
    np.testing.assert_array_equal(np.load(tmp_path / "two.npz")["scene"][0], scene[1])
    code, failed, _ = run_cli(capsys, "embed", root / "encoder.pt")
    assert code == 1 and "--audio" in failed["error"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_model_embeds_on_its_device(exported):
    root, _, _ = exported
    clips = torch.from_numpy(np.stack([tone(440, 1.0, 16000)]).astype(np.float32))
    model = hear.load_model(root / "encoder.pt")
    on_cpu, _ = hear.get_timestamp_embeddings(clips, model)
    on_gpu, stamps = hear.get_timestamp_embeddings(clips.cuda(), model.cuda())
    assert on_gpu.is_cuda and stamps.is_cuda
    assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-4)


CLIPS = torch.from_numpy(np.stack([tone(f, 1.0, 16000) for f in (300, 900)]).astype(np.float32))


@pytest.mark.parametrize("embed", [hear.get_timestamp_embeddings, hear.get_scene_embeddings])
@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (torch.zeros(2, 0), r"0 samples per sound \(shape \(2, 0\)\).*\(n_sounds, n_samples\)"),
        (torch.zeros(0, 16000), r"no sounds \(shape \(0, 16000\)\)"),
        (torch.zeros(16000, 2), r"2 samples per sound \(shape \(16000, 2\)\).*400 samples"),
        (torch.zeros(3, 399), r"399 samples per sound"),
        (torch.zeros(16000), r"\(n_sounds, n_samples\), got shape \(16000,\); one sound x is x"),
        (torch.zeros(1, 2, 16000), r"\(n_sounds, n_samples\), got shape \(1, 2, 16000\)$"),
    ],
)
def test_hear_refuses_audio_of_the_wrong_shape(model, embed, audio, message):
    """Empty audio failed deep inside (IndexError, an MKL FFT error) and (samples, channels)
    was read as thousands of 2-sample sounds: each is now a ValueError naming the shape."""
    with pytest.raises(ValueError, match=message):
        embed(audio, model)


def test_hear_refuses_non_finite_samples(model):
    """NaN or Inf samples gave NaN embeddings without a word."""
    audio = CLIPS.repeat(3, 1)
    audio[1, 5], audio[1, 9], audio[4, 0] = float("nan"), float("inf"), -float("inf")
    message = r"3 non-finite samples .* in 2 of 6 sounds \(rows 1, 4\)"
    with pytest.raises(ValueError, match=message):
        hear.get_timestamp_embeddings(audio, model)
    with pytest.raises(ValueError, match=message):
        hear.get_scene_embeddings(audio.double(), model)
    huge = CLIPS.double().numpy()[:1].copy()
    huge[0, 7] = 1e300  # finite as float64, not as float32
    with pytest.raises(ValueError, match=r"1 non-finite .*beyond float32.* \(rows 0\)"):
        hear.get_scene_embeddings(huge, model)


@pytest.mark.parametrize(
    ("audio", "dtype"),
    [
        (CLIPS.to(torch.complex64), "torch.complex64"),
        (CLIPS > 0, "torch.bool"),
        ((CLIPS * 127 + 128).to(torch.uint8), "torch.uint8"),
        (CLIPS.numpy().astype(np.complex128), "complex128"),
        (np.array([["a"] * 16000]), "<U1"),
    ],
)
def test_hear_refuses_dtypes_it_would_misread(model, audio, dtype):
    """Complex input silently lost its imaginary part."""
    with pytest.raises(ValueError, match=f"dtype {dtype}; HEAR expects real floating-point"):
        hear.get_scene_embeddings(audio, model)


def test_hear_converts_numpy_and_integer_audio(model):
    """A numpy array raised AttributeError: it is converted, as are integer samples (the peak
    normalisation makes their scale irrelevant); a list is refused by name."""
    expected = hear.get_scene_embeddings(CLIPS, model)
    assert torch.equal(hear.get_scene_embeddings(CLIPS.numpy(), model), expected)
    assert torch.equal(hear.get_scene_embeddings(CLIPS.double(), model), expected)
    pcm = (CLIPS * 2**14).round()
    as_int = hear.get_scene_embeddings(pcm.to(torch.int16), model)
    assert torch.equal(as_int, hear.get_scene_embeddings(pcm, model))
    emb, stamps = hear.get_timestamp_embeddings(pcm.numpy().astype(np.int32), model)
    assert emb.dtype == stamps.dtype == torch.float32 and emb.shape[0] == 2
    with pytest.raises(TypeError, match="torch.Tensor .* of shape .*, got a list"):
        hear.get_scene_embeddings(CLIPS.tolist(), model)
