"""A feature cache damaged after it was finished: the damage is named and the cache rebuilt,
never trusted (an index that does not read back, a clip list cut short, same-size garbage in
the data file)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aclaudio.data import datasets
from aclaudio.data.atomic import DamagedFileError
from aclaudio.data.cache import FeatureCache, build_cache


def finished_cache(tiny_dataset, tmp_path):
    dataset = datasets.load_dataset(tiny_dataset)
    cache = build_cache(dataset, "cpu", cache_dir=tmp_path / "cache", progress=False, workers=1)
    return dataset, cache


def without_frames(path):
    meta = json.loads(path.read_text())
    del meta["frames"]
    path.write_text(json.dumps(meta))


def cut_clips(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))


def garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


DAMAGE = {
    "meta.json garbage": ("meta.json", lambda p: p.write_text("{not json"), "meta.json: unread"),
    "meta.json empty": ("meta.json", lambda p: p.write_text(""), "meta.json: unreadable"),
    "meta.json without frames": ("meta.json", without_frames, "meta.json: lacks 'frames'"),
    "clips.csv cut short": ("clips.csv", cut_clips, "clips.csv lists 12 clips"),
    "features.f16 same-size garbage": ("features.f16", garbage, "does not hold the bytes"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_cache_is_named_and_rebuilt(tiny_dataset, tmp_path, capsys, case):
    dataset, cache = finished_cache(tiny_dataset, tmp_path)
    reference = np.asarray(cache.data).copy()
    name, damage, message = DAMAGE[case]
    damage(cache.path / name)
    rebuilt = build_cache(dataset, "cpu", cache_dir=tmp_path / "cache", progress=False, workers=1)
    err = capsys.readouterr().err
    assert f"feature cache {cache.path} is damaged" in err and message in err
    assert len(rebuilt) == len(cache) == 15
    np.testing.assert_array_equal(np.asarray(rebuilt.data), reference)


def test_opening_a_damaged_index_names_the_file_and_what_to_do(tiny_dataset, tmp_path):
    _, cache = finished_cache(tiny_dataset, tmp_path)
    (cache.path / "meta.json").write_text("")
    with pytest.raises(DamagedFileError, match=f"{cache.path}/meta.json: unreadable .*delete"):
        FeatureCache(cache.path)


def test_a_copied_cache_is_checked_once_and_trusted(tiny_dataset, tmp_path):
    """A copy has new modification times: its bytes are read through and match the digest."""
    import shutil

    dataset, cache = finished_cache(tiny_dataset, tmp_path)
    shutil.copytree(tmp_path / "cache", tmp_path / "copy", copy_function=shutil.copy)  # new times
    again = build_cache(dataset, "cpu", cache_dir=tmp_path / "copy", progress=False, workers=1)
    np.testing.assert_array_equal(np.asarray(again.data), np.asarray(cache.data))
