"""The HEAR benchmark's API (hearbenchmark.com) over an exported encoder (lib/export.py).

    model = load_model("encoder.pt")
    embeddings, timestamps = get_timestamp_embeddings(audio, model)  # audio: (n, samples)
    scene = get_scene_embeddings(audio, model)

Audio takes the feature cache's way (peak-normalised, the preset's log-mel) and is cut into
the patches the library evaluates with (patch_frames, hop eval_hop), so an exported encoder
embeds a clip as `aclaudio embed` does, without the training data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from aclaudio.data.datasets import AudioError, audio_problem, read_table
from aclaudio.data.features import Preset, load_audio, log_mel, patch_frame_index, patch_starts
from aclaudio.export import load_export
from aclaudio.nn.augment import normalise
from aclaudio.nn.models import build_encoder


class ExportedEncoder(nn.Module):
    """An exported encoder with its front end; HEAR reads the three size and rate attributes."""

    def __init__(self, state: dict):
        super().__init__()
        self.preset = Preset(**state["preset"])
        self.encoder = build_encoder(state["encoder"]["name"], **state["encoder"]["kwargs"])
        self.encoder.load_state_dict(state["encoder"]["state_dict"])
        self.register_buffer("mean", torch.tensor(state["normalisation"]["mean"]))
        self.register_buffer("std", torch.tensor(state["normalisation"]["std"]))
        self.sample_rate = self.preset.sample_rate
        self.scene_embedding_size = self.timestamp_embedding_size = self.encoder.out_dim
        self.eval()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) log-mel patches -> (B, dim) embeddings."""
        return self.encoder(normalise(patches[:, None], self.mean, self.std))


def load_model(model_file_path: str | Path) -> ExportedEncoder:
    """The exported encoder in `model_file_path`, in eval mode on the CPU (.to() moves it)."""
    return ExportedEncoder(load_export(model_file_path))


def get_timestamp_embeddings(
    audio: torch.Tensor, model: ExportedEncoder
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) audio at model.sample_rate -> embeddings (n_sounds, n_patches, dim)
    and the centre of each patch in milliseconds (n_sounds, n_patches)."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
    preset, device = model.preset, model.mean.device
    wave = audio.detach().float().cpu()  # the front end runs on the CPU, as the cache's does
    wave = wave / wave.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)  # the cache's peak norm
    mel = log_mel(wave, preset)  # (n_sounds, n_mels, n_frames)
    n_frames, frames = mel.shape[-1], preset.patch_frames
    starts = patch_starts(n_frames, frames, preset.eval_hop)
    index = torch.from_numpy(patch_frame_index(starts, frames, n_frames))
    patches = mel[:, :, index].permute(0, 2, 1, 3)  # (n_sounds, n_patches, n_mels, frames)
    model.eval()
    with torch.no_grad():
        emb = model(patches.flatten(0, 1).to(device)).float()
    # frame f is centred on sample f * hop_length (centred STFT frames)
    centres = (starts + (min(frames, n_frames) - 1) / 2) * preset.hop_length
    centres = centres / preset.sample_rate * 1000
    timestamps = torch.tensor(np.tile(centres, (len(audio), 1)), dtype=torch.float32, device=device)
    return emb.reshape(len(audio), len(starts), -1), timestamps


def get_scene_embeddings(audio: torch.Tensor, model: ExportedEncoder) -> torch.Tensor:
    """(n_sounds, dim): the mean of the sound's timestamp embeddings, as the library's clip
    embeddings are the mean of its patches'."""
    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3"}  # what soundfile reads


def audio_files(source: str | Path) -> list[Path]:
    """The audio files of a folder (searched recursively, sorted) or of a CSV whose `path`
    column lists them (relative paths are read from the CSV's folder)."""
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if source.suffix.lower() == ".csv":
        table = read_table(source, ["path"], layout="a CSV with one audio file per row")
        return [source.parent / p for p in table["path"]]
    raise ValueError(f"{source}: neither a folder of audio files nor a CSV of paths")


def embed_files(model: ExportedEncoder, paths: list[Path]) -> tuple[np.ndarray, pd.DataFrame]:
    """Scene embeddings of audio files, one at a time (their lengths differ), and a manifest
    with one row per file: its embedding row (-1 for a file that cannot be used) and problem."""
    embeddings, rows = [], []
    for path in tqdm(paths, desc="embedding", unit="file"):
        problem = audio_problem(str(path))
        if problem is None:
            try:
                wave = load_audio(path, model.sample_rate)
            except AudioError as error:
                problem = error.problem
        if problem is not None:
            rows.append({"path": str(path), "row": -1, "seconds": None, "problem": problem})
            continue
        embeddings.append(get_scene_embeddings(wave[None], model)[0].cpu().numpy())
        seconds = len(wave) / model.sample_rate
        rows.append(
            {"path": str(path), "row": len(embeddings) - 1, "seconds": seconds, "problem": None}
        )
    dim = model.scene_embedding_size
    stacked = np.stack(embeddings) if embeddings else np.zeros((0, dim), np.float32)
    return stacked, pd.DataFrame(rows, columns=["path", "row", "seconds", "problem"])
