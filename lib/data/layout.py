"""The folder names of the FSDnoisy18k layout, shared by the loader, the downloader and the
dataset writers (synth, esc50); a module of its own so that the command line reads them
without loading pandas.

    ROOT/FSDnoisy18k.audio_train/*.wav    ROOT/FSDnoisy18k.meta/train.csv
    ROOT/FSDnoisy18k.audio_test/*.wav     ROOT/FSDnoisy18k.meta/test.csv
"""

AUDIO_DIRS = {"train": "FSDnoisy18k.audio_train", "test": "FSDnoisy18k.audio_test"}
META_DIR = "FSDnoisy18k.meta"
DOC_DIR = "FSDnoisy18k.doc"  # documentation beside the data; the loader does not read it
