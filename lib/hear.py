"""The HEAR benchmark's API (hearbenchmark.com) over an exported encoder (lib/export.py).

    model = load_model("encoder.pt")  # load_model(): the shipped encoder, SHIPPED
    embeddings, timestamps = get_timestamp_embeddings(audio, model)  # audio: (n, samples)
    scene = get_scene_embeddings(audio, model)

Audio takes the feature cache's way (mean removed, divided by its peak plus a small headroom, the
preset's log-mel). The scene embedding is the mean of the patches the library evaluates with
(patch_frames, every eval_hop frames while they fit: the authors' grid), so an exported encoder
embeds a clip as `aclaudio embed` does by default, without the training data. Timestamp embeddings
lie on the regular grid HEAR requires (its validator refuses spacings that differ by more than
1 ms): one patch centred on every `model.timestamp_hop` frames from the sound's start, the sound
zero-padded where they reach beyond it.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aclaudio.data.features import (
    Preset,
    log_mel,
    normalise_audio,
    patch_frame_index,
    patch_starts,
)
from aclaudio.nn.augment import normalise
from aclaudio.nn.models import build_encoder

#: The format of the files export.py writes; /2: the preset carries its mel norm and headroom.
FORMAT = "aclaudio-encoder/2"
Audio = torch.Tensor | np.ndarray
INTEGER_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64}  # signed PCM
# the study's cpu-profile ACL encoder (alpha 0.3, m 0.5, seed 0), package data
SHIPPED = Path(__file__).parent / "encoders" / "acl-cpu-seed0.pt"
MAX_HOP_MS = 50  # HEAR's largest recommended timestamp spacing (its onset tolerance)
BATCH = 256  # patches per forward pass: memory stays bounded however long the audio


class ExportedEncoder(nn.Module):
    """An exported encoder with its front end; HEAR reads the three size and rate attributes.

    `timestamp_hop` is the spacing of timestamp embeddings in frames (preset.hop_length samples,
    10 ms for `cpu`); by default the most frames within 50 ms (5 for `cpu`: 50 ms). Set it to
    trade time for resolution: each timestamp costs one forward pass of a patch.
    """

    def __init__(self, state: dict, timestamp_hop: int | None = None):
        super().__init__()
        self.preset = Preset(**state["preset"])
        self.encoder = build_encoder(state["encoder"]["name"], **state["encoder"]["kwargs"])
        self.encoder.load_state_dict(state["encoder"]["state_dict"])
        self.register_buffer("mean", torch.tensor(state["normalisation"]["mean"]))
        self.register_buffer("std", torch.tensor(state["normalisation"]["std"]))
        self.sample_rate = self.preset.sample_rate
        self.scene_embedding_size = self.timestamp_embedding_size = self.encoder.out_dim
        default_hop = MAX_HOP_MS * self.sample_rate // (1000 * self.preset.hop_length)
        self.timestamp_hop = max(default_hop, 1) if timestamp_hop is None else timestamp_hop
        self.eval()

    @property
    def timestamp_hop(self) -> int:
        return self._timestamp_hop

    @timestamp_hop.setter
    def timestamp_hop(self, frames: int) -> None:
        if isinstance(frames, bool) or not isinstance(frames, Integral) or frames < 1:
            frame_ms = 1000 * self.preset.hop_length / self.sample_rate
            raise ValueError(
                f"timestamp_hop must be a positive whole number of frames ({frame_ms:g} ms each), "
                f"got {frames!r}"
            )
        self._timestamp_hop = int(frames)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) log-mel patches -> (B, dim) embeddings."""
        return self.encoder(normalise(patches[:, None], self.mean, self.std))


def load_export(path: str | Path) -> dict:
    """The contents of an exported file, with a one-line error for anything else."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for files it cannot read
        reason = str(error).partition("\n")[0]
        raise ValueError(f"{path}: not an aclaudio encoder export ({reason})") from None
    if isinstance(state, dict) and state.get("format") == "aclaudio-encoder/1":
        raise ValueError(
            f"{path}: an export of an earlier front end (slaney-normalised mel filters, peak "
            f"normalisation), which this version would feed other features; export the run again"
        )
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an aclaudio encoder export (format {FORMAT} expected)")
    return state


def load_model(
    model_file_path: str | Path | None = None, *, timestamp_hop: int | None = None
) -> ExportedEncoder:
    """The exported encoder in `model_file_path`, in eval mode on the CPU (.to() moves it).

    Args:
        model_file_path: an `aclaudio export` file; None loads the shipped encoder, SHIPPED
            (HEAR's validator calls load_model() without a path).
        timestamp_hop: frames between timestamp embeddings; None: the most within 50 ms.

    Example:
        >>> model = load_model("encoder.pt", timestamp_hop=2)  # doctest: +SKIP
    """
    if model_file_path is None and not SHIPPED.is_file():
        raise FileNotFoundError(
            f"load_model() without a path loads the shipped encoder {SHIPPED} (the study's "
            f"cpu-profile ACL encoder: alpha 0.3, m 0.5, seed 0), which is not there; write it "
            f"with `aclaudio export RUN_DIR --to {SHIPPED}` from that run, or pass the path of "
            f"an export"
        )
    path = SHIPPED if model_file_path is None else model_file_path
    return ExportedEncoder(load_export(path), timestamp_hop)


def _audio_tensor(audio: Audio) -> torch.Tensor:
    """`audio` as a float32 tensor, refusing dtypes whose samples would be misread: complex
    (the imaginary part would be dropped), bool and unsigned (8-bit PCM is centred on 128)."""
    if isinstance(audio, np.ndarray):
        dtype, ok = audio.dtype, audio.dtype.kind in "fi"
    elif isinstance(audio, torch.Tensor):
        dtype = audio.dtype
        ok = dtype.is_floating_point or dtype in INTEGER_DTYPES
    else:
        raise TypeError(
            f"audio must be a torch.Tensor (or numpy array) of shape (n_sounds, n_samples), "
            f"got a {type(audio).__name__}"
        )
    if not ok:
        raise ValueError(
            f"audio has dtype {dtype}; HEAR expects real floating-point samples (signed integer "
            f"samples are also accepted), converted to float32"
        )
    if isinstance(audio, np.ndarray):
        with np.errstate(over="ignore"):  # values beyond float32 are reported by check_audio
            return torch.from_numpy(np.array(audio, dtype=np.float32))
    return audio.detach().float()


def check_audio(audio: Audio, model: ExportedEncoder) -> torch.Tensor:
    """HEAR's (n_sounds, n_samples) audio as float32, or a ValueError naming what is wrong: the
    front end would otherwise fail deep inside or embed NaN or a misread layout without a word.

    A sound shorter than one analysis window (preset.win_length samples, 25 ms for `cpu`) has no
    complete frame to describe and is refused: a (n_samples, n_channels) array read as HEAR's
    layout has a handful of "samples" per sound, and is caught by this rule rather than guessed.

    Args:
        audio: (n_sounds, n_samples) torch tensor at model.sample_rate, floating or signed
            integer; a numpy array is converted (HEAR passes tensors).
        model: the encoder whose front end will read the audio.

    Example:
        >>> check_audio(torch.zeros(16000, 2), model)  # doctest: +SKIP
        ValueError: audio has 2 samples per sound (shape (16000, 2)); ...
    """
    wave = _audio_tensor(audio)
    shape, window = tuple(wave.shape), model.preset.win_length
    if wave.ndim != 2:
        one = "; one sound x is x[None]" if wave.ndim == 1 else ""
        raise ValueError(f"audio must be (n_sounds, n_samples), got shape {shape}{one}")
    if shape[0] == 0:
        raise ValueError(f"audio has no sounds (shape {shape}); HEAR expects (n_sounds, n_samples)")
    if shape[1] < window:
        raise ValueError(
            f"audio has {shape[1]} samples per sound (shape {shape}); HEAR expects (n_sounds, "
            f"n_samples) with at least one analysis window ({window} samples at "
            f"{model.sample_rate} Hz) per sound; (n_samples, n_channels) audio must be mixed to "
            f"mono and laid out (n_sounds, n_samples)"
        )
    bad = ~torch.isfinite(wave)
    if bad.any():
        per_sound = bad.sum(dim=1)
        sounds = per_sound.nonzero().flatten().tolist()
        listed = ", ".join(map(str, sounds[:10])) + (", ..." if len(sounds) > 10 else "")
        raise ValueError(
            f"audio has {int(per_sound.sum())} non-finite samples (NaN, Inf or beyond float32) in "
            f"{len(sounds)} of {shape[0]} sounds (rows {listed}); HEAR expects finite samples"
        )
    return wave


def _wave(audio: Audio, model: ExportedEncoder) -> torch.Tensor:
    """The checked audio, normalised as the cache's audio is (features.normalise_audio), on the
    CPU where the front end runs (as the cache's does)."""
    return normalise_audio(check_audio(audio, model).cpu(), model.preset)


def _embed(mel: torch.Tensor, index: np.ndarray, model: ExportedEncoder) -> torch.Tensor:
    """(n_sounds, n_patches, dim) embeddings, on the model's device, of the patches
    mel[..., index] ((n_patches, frames) frame indices), about BATCH patches at a time (at
    least one patch of every sound per forward pass)."""
    step = max(BATCH // len(mel), 1)
    chunks = []
    model.eval()
    with torch.no_grad():
        for first in range(0, len(index), step):
            patches = mel[:, :, index[first : first + step]].permute(0, 2, 1, 3)
            emb = model(patches.flatten(0, 1).to(model.mean.device)).float()
            chunks.append(emb.reshape(len(mel), -1, emb.shape[-1]))
    return torch.cat(chunks, dim=1)


def timestamp_grid(n_samples: int, preset: Preset, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """The first frame (negative before the sound) of the patch centred on each timestamp, and
    the timestamps in milliseconds: every `hop` frames from the sound's start while within it.

    Frame f is centred on sample f * hop_length (centred STFT frames) and a patch's centre lies
    (patch_frames - 1) / 2 frames after its first, so with an even patch_frames the grid starts
    half a frame (5 ms for `cpu`) after 0. Timestamps are whole frames times the frame's length,
    so they do not drift however long the sound; a sound of half a frame gets one.

    Args:
        n_samples: the sound's length in samples.
        preset: its front end.
        hop: frames between timestamps.

    Example:
        >>> timestamp_grid(4000, get_preset("cpu"), 5)[1]  # doctest: +SKIP
        array([  5.,  55., 105., 155., 205.])
    """
    half = (preset.patch_frames - 1) / 2
    centres = np.arange(0, n_samples // preset.hop_length + 1, hop) + half % 1
    centres = centres[centres * preset.hop_length <= n_samples]
    ms = centres * 1000 * preset.hop_length / preset.sample_rate
    return (centres - half).astype(np.int64), ms


def get_timestamp_embeddings(
    audio: Audio, model: ExportedEncoder
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) audio at model.sample_rate -> embeddings (n_sounds, n_timestamps,
    dim) and timestamps in milliseconds (n_sounds, n_timestamps), on the model's device.

    Each timestamp is the centre of its patch, on timestamp_grid's regular grid (HEAR's rule);
    the sound is zero-padded for the patches that reach beyond it, so no patch is moved to fit.

    Args:
        audio: a float (or signed integer) tensor, checked by check_audio; a numpy array is
            converted.
        model: from load_model; model.timestamp_hop sets the spacing.

    Example:
        >>> emb, ms = get_timestamp_embeddings(torch.randn(2, 16000), model)  # doctest: +SKIP
        >>> ms[0, :3]  # doctest: +SKIP
        tensor([  5.,  55., 105.])
    """
    wave, preset = _wave(audio, model), model.preset
    starts, centres = timestamp_grid(wave.shape[-1], preset, model.timestamp_hop)
    n_frames, frames = 1 + wave.shape[-1] // preset.hop_length, preset.patch_frames
    left, right = max(-starts[0], 0), max(starts[-1] + frames - n_frames, 0)
    padded = log_mel(F.pad(wave, (left * preset.hop_length, right * preset.hop_length)), preset)
    emb = _embed(padded, patch_frame_index(starts + left, frames, padded.shape[-1]), model)
    timestamps = torch.tensor(centres, dtype=torch.float32, device=emb.device)
    return emb, timestamps.expand(len(wave), -1).contiguous()


def get_scene_embeddings(audio: Audio, model: ExportedEncoder) -> torch.Tensor:
    """(n_sounds, dim): the mean embedding of the sound's evaluation patches (patch_frames, hop
    eval_hop, none aligned to its end, as the authors' evaluation; a short sound repeated to fill
    one), as the library's clip embeddings and `aclaudio embed`'s are by default.

    Args:
        audio: as for get_timestamp_embeddings.
        model: from load_model.

    Example:
        >>> scene = get_scene_embeddings(torch.randn(2, 16000), model)  # doctest: +SKIP
    """
    mel = log_mel(_wave(audio, model), model.preset)
    n_frames, frames = mel.shape[-1], model.preset.patch_frames
    starts = patch_starts(n_frames, frames, model.preset.eval_hop, end_patch=False)
    return _embed(mel, patch_frame_index(starts, frames, n_frames), model).mean(dim=1)
