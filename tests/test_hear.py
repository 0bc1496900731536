"""Export of a pretraining run's encoder and the HEAR API over the exported file."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli, tone

from aclaudio import hear
from aclaudio.data import features, synth
from aclaudio.evaluation import embeddings
from aclaudio.export import export_encoder
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import batches, config, runs

ROWS = 3  # test clips of the smoke data embedded both ways


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A one-epoch smoke run, its export, and the audio of a few of its test clips."""
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
        cache.data[start : start + length] = features.clip_log_mel(path, preset).T
        audio.append(features.load_audio(path, preset.sample_rate))
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
    assert state["commit"] == runs.load_results(run.path.parent)["commit"].iloc[-1]
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


CHILD = """
import sys, torch
from aclaudio import hear
model = hear.load_model(sys.argv[1])
clips = torch.load(sys.argv[2])
out = {"attrs": [model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size],
       "timestamp": [hear.get_timestamp_embeddings(c[None], model) for c in clips],
       "scene": [hear.get_scene_embeddings(c[None], model) for c in clips]}
torch.save(out, sys.argv[3])
"""


def test_a_fresh_process_without_the_data_embeds_as_the_library(exported, tmp_path):
    root, run, _ = exported
    audio, expected = reference(run, ROWS)
    torch.save(audio, tmp_path / "clips.pt")
    moved = tmp_path / "moved-data"
    shutil.move(root / "data", moved)  # the child cannot reach the dataset nor its cache
    try:
        subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                root / "encoder.pt",
                tmp_path / "clips.pt",
                tmp_path / "out.pt",
            ],
            check=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        shutil.move(moved, root / "data")
    out = torch.load(tmp_path / "out.pt")
    assert out["attrs"] == [16000, 128, 128]
    for (emb, stamps), scene, want in zip(out["timestamp"], out["scene"], expected, strict=True):
        assert emb.dtype == torch.float32 and emb.shape == (1, len(want), 128)
        assert torch.allclose(emb[0], torch.from_numpy(want), rtol=1e-4, atol=1e-5)
        assert torch.allclose(scene[0], torch.from_numpy(want.mean(0)), rtol=1e-4, atol=1e-5)
        assert stamps.shape == (1, len(want)) and bool((stamps.diff() > 0).all())


def test_the_hear_contract(exported):
    root, _, _ = exported
    model = hear.load_model(root / "encoder.pt")
    preset = model.preset  # cpu: 16 kHz, hop 160 samples (10 ms), 64-frame patches, hop 32
    assert not model.training
    clips = torch.from_numpy(
        np.stack([tone(f, 1.5, 16000) for f in (300, 900, 2000)]).astype(np.float32)
    )  # 1.5 s: 151 frames, patches at 0, 32, 64 and one at the end, 87
    emb, stamps = hear.get_timestamp_embeddings(clips, model)
    assert emb.shape == (3, 4, 128) and emb.dtype == torch.float32
    assert stamps.dtype == torch.float32
    centres = np.array([0, 32, 64, 87]) + (preset.patch_frames - 1) / 2
    assert torch.allclose(stamps, torch.tensor(centres * 10.0).float().expand(3, 4))
    alone = hear.get_timestamp_embeddings(clips[1:2], model)[0]
    assert torch.allclose(alone[0], emb[1], rtol=1e-5, atol=1e-6)  # batch independence
    assert torch.equal(hear.get_timestamp_embeddings(clips, model)[0], emb)  # determinism
    scene = hear.get_scene_embeddings(clips, model)
    assert scene.shape == (3, 128) and torch.allclose(scene, emb.mean(1))
    short, short_stamps = hear.get_timestamp_embeddings(clips[:, :4000], model)  # 26 frames
    assert short.shape == (3, 1, 128) and torch.allclose(short_stamps, torch.tensor([[125.0]] * 3))
    assert not torch.equal(emb[0, 0], emb[1, 0])  # different sounds, different embeddings


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
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "emb.npz"
    code, summary, text = run_cli(
        capsys, "embed", root / "encoder.pt", "--audio", folder, "--out", out
    )
    assert code == 0 and summary["files"] == 3 and summary["embedded"] == 2
    assert summary["bad_files"] == [
        {"path": str(folder / "silent.wav"), "problem": "all-silent (every sample is zero)"}
    ]
    assert "silent.wav: all-silent" in text
    manifest = pd.read_csv(out.with_suffix(".csv"))
    assert manifest["path"].tolist() == [
        str(folder / n) for n in ("a.wav", "silent.wav", "sub/b.flac")
    ]
    assert manifest["row"].tolist() == [0, -1, 1]
    scene = np.load(out)["scene"]
    model = hear.load_model(root / "encoder.pt")
    expected = hear.get_scene_embeddings(
        features.load_audio(folder / "a.wav", model.sample_rate)[None], model
    )
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
