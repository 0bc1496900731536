"""The built-in dataset under real processes: two writers of one folder, writers killed at each
step, and worker processes that end with a killed writer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from aclaudio.data import synth
from aclaudio.data.system import usable_cpus

# Two writers of one folder. The first, half way through its clips, waits for the second to
# start and (without a lock) to delete what it wrote; the second renders slowly, so that the
# first returns long before the second has rendered the deleted clips again. Each then checks
# what its caller would use: every clip listed in the tables present and readable.
TWO_WRITERS = """
import json, sys, time
from pathlib import Path
import pandas as pd
import soundfile as sf
from aclaudio.data import synth
from aclaudio.data.layout import AUDIO_DIRS, META_DIR
role, root, sync = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
render, rendered = synth._render, []

def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)

def first(task):
    render(task)
    rendered.append(Path(task[0]))
    if len(rendered) == 50:
        (sync / "half").touch()
        wait_for((sync / "second").exists, 120)
        wait_for(lambda: not rendered[0].exists(), 3)

def second(task):
    time.sleep(0.05)
    render(task)

if role == "second":
    wait_for((sync / "half").exists, 120)
    (sync / "second").touch()
synth._render = first if role == "first" else second
summary = synth.synthesize(root, profile="smoke", seed=0, progress=False)
unreadable = []
for split, folder in AUDIO_DIRS.items():
    for name in pd.read_csv(root / META_DIR / f"{split}.csv").fname:
        try:
            sf.read(root / folder / name)
        except Exception as error:
            unreadable.append(f"{folder}/{name}: {error}")
print(json.dumps({"reused": summary["reused"], "unreadable": unreadable}))
"""


def dataset_files(root: Path) -> dict[str, bytes]:
    """Every file under root but the marker (which records where the dataset was written)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != synth.MARKER
    }


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[int, dict[str, bytes]]:
    """The smoke set's files for seeds 0 and 1, each written by one process alone."""
    root = tmp_path_factory.mktemp("references")
    for seed in (0, 1):
        synth.synthesize(root / str(seed), profile="smoke", seed=seed, progress=False)
    return {seed: dataset_files(root / str(seed)) for seed in (0, 1)}


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.parent.glob(f".{root.name}.*.tmp")]


def test_two_writers_of_one_folder_take_turns(tmp_path, references):
    root, sync = tmp_path / "data", tmp_path / "sync"
    sync.mkdir()
    writers = {}
    for role in ("first", "second"):
        with open(tmp_path / f"{role}.log", "w") as log:
            writers[role] = subprocess.Popen(
                [sys.executable, "-c", TWO_WRITERS, role, str(root), str(sync)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    reports = {}
    for role, writer in writers.items():
        output = (tmp_path / f"{role}.log").read_text
        assert writer.wait(timeout=300) == 0, output()
        reports[role] = json.loads(output().strip().splitlines()[-1])
    # before the fix both wrote, and the first returned while the second had deleted its clips
    assert reports["first"] == {"reused": False, "unreadable": []}
    assert reports["second"] == {"reused": True, "unreadable": []}  # it waited, then reused
    assert dataset_files(root) == references[0]
    assert leftovers(root) == []


# A writer replacing the seed-0 set by the seed-1 one, killed (-9) before the STEP-th move into
# the folder (step 0: while rendering its clips).
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from aclaudio.data import synth
root, step = Path(sys.argv[1]).resolve(), int(sys.argv[2])
render, replace, moves = synth._render, os.replace, []

def render_then_die(task):
    render(task)
    os.kill(os.getpid(), signal.SIGKILL)

def die_before_a_move(source, target):
    if Path(target).resolve().is_relative_to(root):
        moves.append(target)
        if len(moves) == step:
            os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)

if step == 0:
    synth._render = render_then_die
os.replace = die_before_a_move
synth.synthesize(root, profile="smoke", seed=1, progress=False)
"""


@pytest.mark.parametrize("step", [0, 1, 3, 4, 6])
def test_a_killed_writer_leaves_the_old_set_or_an_untrusted_one(tmp_path, references, step):
    """Moves into the folder: train.csv, test.csv, the two audio folders, README.md and the
    marker. Before the marker, the folder is never reused, nor refused as another's dataset;
    the killed writer's folder beside it goes with the next writer; other files stay."""
    root = tmp_path / "data"
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    (root / ".aclaudio-cache").mkdir()
    (root / ".aclaudio-cache" / "meta.json").write_text("{}")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root), str(step)])
    assert killed.returncode == -signal.SIGKILL
    assert len(leftovers(root)) == 1
    marker = root / "FSDnoisy18k.doc" / synth.MARKER
    if step == 0:  # still the old set, complete
        assert dataset_files(root) == references[0] | {".aclaudio-cache/meta.json": b"{}"}
        assert synth.synthesize(root, profile="smoke", seed=0, progress=False)["reused"]
    else:
        assert not marker.exists()
        train = pd.read_csv(root / "FSDnoisy18k.meta" / "train.csv")
        assert "true_label" in train.columns  # synth's own: never refused
    summary = synth.synthesize(root, profile="smoke", seed=1, progress=False)
    assert summary["reused"] is False and json.loads(marker.read_text())["settings"]["seed"] == 1
    assert dataset_files(root) == references[1] | {".aclaudio-cache/meta.json": b"{}"}
    assert leftovers(root) == []


def test_other_files_in_the_folder_stay(tmp_path, references):
    """The feature cache lives in the dataset's folder by default: regenerating the dataset
    keeps it (its key covers the files' stamps, so it never serves the old clips)."""
    root = tmp_path / "data"
    (root / ".aclaudio-cache" / "cpu-0123").mkdir(parents=True)
    kept = {".aclaudio-cache/cpu-0123/meta.json": b"{}", "notes.txt": b"mine"}
    for name, content in kept.items():
        (root / name).write_bytes(content)
    for seed in (0, 1, 0):
        synth.synthesize(root, profile="smoke", seed=seed, progress=False)
        assert dataset_files(root) == references[seed] | kept
    shutil.rmtree(root / "FSDnoisy18k.audio_test")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    assert dataset_files(root) == references[0] | kept


def running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(usable_cpus() < 2, reason="the cpu set is rendered in one process")
def test_a_killed_writer_takes_its_worker_processes_along(tmp_path):
    script = "import sys; from aclaudio.data import synth; synth.synthesize(sys.argv[1])"
    with open(tmp_path / "log", "w") as log:  # a file: surviving workers would hold a pipe
        writer = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "data")], stdout=log, stderr=log
        )
    try:
        deadline, workers = time.monotonic() + 120, []
        while len(workers) < usable_cpus() and time.monotonic() < deadline:
            time.sleep(0.1)  # the pool's workers are the children of its forkserver
            children = psutil.Process(writer.pid).children(recursive=True)
            workers = [p for p in children if p.ppid() != writer.pid]
        assert len(workers) == usable_cpus(), (tmp_path / "log").read_text()
        descendants = psutil.Process(writer.pid).children(recursive=True)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    deadline = time.monotonic() + 5
    while any(map(running, descendants)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in descendants if running(p)]
    for process in survivors:  # before the fix the workers rendered on, then waited forever
        process.kill()
    assert not [p for p in survivors if p in workers]
    assert not survivors  # the forkserver and the resource tracker end too
