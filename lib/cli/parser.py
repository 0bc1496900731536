"""The `aclaudio` command's arguments: one subparser per subcommand, bound to its function in
commands.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from aclaudio import __version__
from aclaudio.cli import commands
from aclaudio.data import folders
from aclaudio.training.profiles import PROFILES


def _add_training_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--profile", choices=list(PROFILES), default="cpu")
    command.add_argument("--data-dir", type=Path, required=True, help="dataset folder")
    command.add_argument("--seed", type=int, help="default: the profile's (0)")
    command.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set alpha=0.3 --set augment.noise=0 (repeatable)",
    )
    command.add_argument(
        "--runs-dir", type=Path, help="run store (default $ACLAUDIO_RUNS or ./runs)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aclaudio",
        description="Angular contrastive learning of audio representations: the study's tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    download = subcommands.add_parser("download", help="download, verify and unpack a dataset")
    download.add_argument("dataset", choices=["fsdnoisy18k", "esc50"])
    download.add_argument("--to", type=Path, required=True, help="target folder")
    download.add_argument("--keep-zips", action="store_true", help="keep the archives")
    download.add_argument(
        "--sha256", help="esc50: the archive's expected sha256 (a download's summary gives it)"
    )
    download.set_defaults(run=commands.download)

    convert = subcommands.add_parser("convert", help="write a dataset in the FSDnoisy18k layout")
    convert.add_argument("dataset", choices=["esc50"])
    convert.add_argument("src", type=Path, help="the ESC-50 folder (meta/esc50.csv, audio/)")
    convert.add_argument("--to", type=Path, required=True, help="target folder")
    convert.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="share of the noisy subset given another class at random (0 to 1, default 0)",
    )
    convert.add_argument("--seed", type=int, default=0, help="draws the label noise")
    convert.set_defaults(run=commands.convert)

    synth = subcommands.add_parser("synth", help="generate the built-in dataset")
    synth.add_argument("--to", type=Path, required=True, help="target folder")
    synth.add_argument("--profile", choices=["smoke", "cpu"], default="cpu")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=commands.synth)

    data = subcommands.add_parser("data", help="inspect a dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="WHAT")
    summary = data_commands.add_parser("summary", help="classes, counts, hours, bad files")
    summary.add_argument("dir", type=Path)
    summary.set_defaults(run=commands.data_summary)

    config = subcommands.add_parser("config", help="inspect the settings of a profile")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="WHAT")
    show = config_commands.add_parser("show", help="every --set key with its value and type")
    show.add_argument("--profile", choices=list(PROFILES), default="cpu")
    show.add_argument("--kind", choices=["pretrain", "supervised", "finetune"], default="pretrain")
    show.set_defaults(run=commands.config_show)

    feats = subcommands.add_parser("features", help="build the log-mel cache of a dataset")
    feats.add_argument("dir", type=Path)
    feats.add_argument("--preset", default="ssl_paper", help="ssl_paper, sup_paper or cpu")
    feats.add_argument(
        "--cache-dir", type=Path, help="default: $ACLAUDIO_CACHE or DIR/.aclaudio-cache"
    )
    feats.add_argument("--workers", type=int, help="processes (default: one per core)")
    feats.set_defaults(run=commands.features)

    pretrain = subcommands.add_parser("pretrain", help="self-supervised pretraining + linear eval")
    _add_training_options(pretrain)
    pretrain.set_defaults(run=commands.pretrain)

    supervised = subcommands.add_parser(
        "supervised", help="the supervised baseline CNN (CE or ACL)"
    )
    _add_training_options(supervised)
    supervised.add_argument(
        "--subset", choices=["clean", "noisy", "noisy_small", "all"], default="clean"
    )
    supervised.set_defaults(run=commands.supervised)

    linear = subcommands.add_parser("linear-eval", help="linear evaluation of a pretraining run")
    linear.add_argument("run_dir", type=Path)
    linear.set_defaults(run=commands.linear_eval)

    tune = subcommands.add_parser("finetune", help="fine-tune all layers of a pretraining run")
    tune.add_argument("run_dir", type=Path)
    tune.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set epochs=10 --set lr=0.01",
    )
    tune.add_argument("--runs-dir", type=Path, help="default: the pretraining run's store")
    tune.set_defaults(run=commands.finetune)

    embed = subcommands.add_parser(
        "embed",
        help="clip embeddings of a pretraining run's subset, or of any audio files "
        "with an exported encoder",
    )
    embed.add_argument("source", type=Path, help="a pretraining RUN_DIR or an exported FILE")
    embed.add_argument("--subset", default="test", help="clean, noisy, noisy_small, all or test")
    embed.add_argument(
        "--audio", type=Path, help="with an exported FILE: a folder or a CSV with a 'path' column"
    )
    embed.add_argument(
        "--out",
        type=Path,
        help="default: RUN_DIR/embeddings-SUBSET.npz, or "
        "embeddings.npz (+ .csv manifest) with --audio",
    )
    embed.set_defaults(run=commands.embed)

    export = subcommands.add_parser(
        "export", help="a pretraining run's encoder as one file, to use without its data"
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("--to", type=Path, required=True, help="the file to write (.pt)")
    export.set_defaults(run=commands.export)

    grid = subcommands.add_parser("sweep", help="run a grid of the study (skips finished runs)")
    grid.add_argument("grid", choices=["ablation", "comparison", "supervised"])
    grid.add_argument("--profile", choices=list(PROFILES), default="cpu")
    grid.add_argument("--data-dir", type=Path, required=True, help="dataset folder")
    grid.add_argument("--runs-dir", type=Path, help="run store (default $ACLAUDIO_RUNS or ./runs)")
    grid.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline")
    grid.add_argument("--parallel", type=int, default=1, help="jobs at a time (local, slurm)")
    grid.add_argument("--partition", help="SLURM partition")
    grid.add_argument("--gpus", type=int, default=1, help="GPUs per SLURM job")
    grid.add_argument("--minutes", type=int, default=240, help="time limit per job")
    grid.set_defaults(run=commands.sweep)

    report = subcommands.add_parser(
        "report",
        help="the executed notebooks as a static web page",
        description="Render RESULTS/notebooks/*.ipynb to RESULTS/report/, and save the notebooks "
        "back with their paths relative to the checkout that ran them.",
    )
    where = report.add_mutually_exclusive_group()
    where.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="cpu",
        help="render results/PROFILE of the current folder (default cpu)",
    )
    where.add_argument("--results", type=Path, help="render this results folder instead")
    report.set_defaults(run=commands.report)

    headline = subcommands.add_parser(
        "headline",
        help="write a profile's headline tables into README.md",
        description="Replace the block between README's headline markers with the accuracy per "
        "method and the paired comparisons of RESULTS (notebook 02's tables).",
    )
    headline.add_argument(
        "--results",
        type=Path,
        default=folders.results() / "cpu",
        help="a profile's results folder (default results/cpu)",
    )
    headline.add_argument("--readme", type=Path, default=Path("README.md"))
    headline.set_defaults(run=commands.headline)

    bench = subcommands.add_parser("bench", help="run a benchmark, table under results/bench/")
    bench.add_argument("what", choices=["features", "loss", "train", "linear"])
    bench.add_argument("--out-dir", type=Path, help="default: results/bench")
    bench.set_defaults(run=commands.bench)
    return parser
