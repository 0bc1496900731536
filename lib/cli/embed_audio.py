"""`aclaudio embed --audio`: scene embeddings of audio files with an exported encoder, and a
manifest that lists every file, the ones that cannot be used with their problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from aclaudio.data.audio import decode_audio
from aclaudio.data.datasets import AudioError, audio_problem, read_table
from aclaudio.hear import ExportedEncoder, get_scene_embeddings

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


def _too_short(samples: int, model: ExportedEncoder) -> str | None:
    """The problem of a sound with no complete analysis window (hear.check_audio refuses it)."""
    window = model.preset.win_length
    if samples >= window:
        return None
    return f"too short: {samples} samples, less than one analysis window ({window} samples)"


def embed_files(model: ExportedEncoder, paths: list[Path]) -> tuple[np.ndarray, pd.DataFrame]:
    """Scene embeddings of audio files, one at a time (their lengths differ), and a manifest
    with one row per file: its embedding row (-1 for a file that cannot be used) and problem."""
    embeddings, rows = [], []
    for path in tqdm(paths, desc="embedding", unit="file"):
        problem = audio_problem(str(path))
        if problem is None:
            try:
                wave = decode_audio(path, model.preset.sample_rate)
                problem = _too_short(len(wave), model)
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
