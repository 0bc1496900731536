"""The difficulty baseline against the same probe computed independently with librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aclaudio.data import synth
from aclaudio.data.datasets import DatasetError
from aclaudio.evaluation.baseline import difficulty_baseline


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


def librosa_clip_mean(path) -> np.ndarray:
    """The cpu preset's clip-mean log-mel, written with librosa (peak-normalised, 16 kHz)."""
    audio, rate = sf.read(path, dtype="float32")
    audio = librosa.resample(audio / np.abs(audio).max(), orig_sr=rate, target_sr=16000)
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=16000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        window="hamming",
        n_mels=64,
        fmin=50,
        fmax=8000,
        pad_mode="constant",
    )
    return np.log10(mel + 1.1e-8).mean(axis=1)


@pytest.mark.parametrize("subset", ["clean", "all"])
def test_matches_a_librosa_and_sklearn_probe_to_one_clip(smoke, subset):
    meta = smoke / "FSDnoisy18k.meta"
    train, test = pd.read_csv(meta / "train.csv"), pd.read_csv(meta / "test.csv")
    chosen = train[train.manually_verified == 1] if subset == "clean" else train
    x_train = [librosa_clip_mean(smoke / "FSDnoisy18k.audio_train" / f) for f in chosen.fname]
    x_test = [librosa_clip_mean(smoke / "FSDnoisy18k.audio_test" / f) for f in test.fname]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    expected = probe.fit(x_train, chosen.label).score(x_test, test.label)

    result = difficulty_baseline(smoke, train_subset=subset)
    # the cache stores float16 and resamples with soxr directly: at most one clip may flip
    assert result["accuracy"] == pytest.approx(expected, abs=1 / len(test) + 1e-9)
    assert (result["n_train"], result["n_test"]) == (len(chosen), len(test))
    low, high = result["accuracy_ci"]
    assert 0 <= low <= result["accuracy"] <= high <= 1
    assert result["macro"] == pytest.approx(result["accuracy"])  # the test set is balanced


def test_separable_tones_are_learned_and_weaker_regularisation_changes_nothing(tiny_dataset):
    for C in (0.1, 10.0):
        result = difficulty_baseline(tiny_dataset, C=C)
        assert result == {**result, "accuracy": 1.0, "macro": 1.0, "n_train": 6, "n_test": 3}


def test_it_learns_the_given_labels_even_when_they_change_after_the_cache(tiny_dataset):
    """Bell and Buzz swapped in the clean subset: their test clips are now called wrongly
    (Chirp alone is right), although the cache was built with the true labels."""
    assert difficulty_baseline(tiny_dataset)["accuracy"] == 1.0  # builds the cache
    csv = tiny_dataset / "FSDnoisy18k.meta" / "train.csv"
    table = pd.read_csv(csv)
    table["label"] = table["label"].replace({"Bell": "Buzz", "Buzz": "Bell"})
    table.to_csv(csv, index=False)
    assert difficulty_baseline(tiny_dataset)["accuracy"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"train_subset": "test"}, ValueError, "train_subset must be one of clean, noisy"),
        ({"train_subset": "dirty"}, ValueError, "got 'dirty'"),
        ({"C": 0}, ValueError, "C .* must be positive"),
    ],
)
def test_bad_arguments_are_named(tiny_dataset, kwargs, error, message):
    with pytest.raises(error, match=message):
        difficulty_baseline(tiny_dataset, **kwargs)


def test_a_subset_with_one_class_and_a_missing_folder_are_named(tiny_dataset, tmp_path):
    csv = tiny_dataset / "FSDnoisy18k.meta" / "train.csv"
    table = pd.read_csv(csv)
    table.loc[table.label != "Bell", "manually_verified"] = 0
    table.to_csv(csv, index=False)
    with pytest.raises(ValueError, match="'clean' subset needs clips of at least two classes"):
        difficulty_baseline(tiny_dataset)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        difficulty_baseline(tmp_path / "nowhere")
