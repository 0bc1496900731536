"""The `aclaudio` command's arguments: one subparser per subcommand, bound to its function in
commands.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from aclaudio import __version__
from aclaudio.cli import commands
from aclaudio.data import folders
from aclaudio.training.profiles import PROFILES

#: The built-in dataset's sizes (aclaudio.data.synth.PROFILES; not imported: it loads numpy).
BUILTIN_PROFILES = ["smoke", "cpu", "fsd"]
KINDS = ["pretrain", "supervised", "finetune"]
RUNS_DIR_HELP = "run store (default $ACLAUDIO_RUNS or ./runs)"


def _add_training_options(
    command: argparse.ArgumentParser, *, profile: str | None = "cpu", required: bool = True
) -> None:
    """The options that choose a run's config: profile, dataset, seed and --set overrides."""
    command.add_argument(
        "--profile",
        choices=list(PROFILES),
        default=profile,
        help="the settings of this scale of the study (default cpu; `aclaudio config show`)",
    )
    command.add_argument("--data-dir", type=Path, required=required, help="dataset folder")
    command.add_argument("--seed", type=int, help="default: the profile's (0)")
    command.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set alpha=0.3 --set augment.noise=0 (repeatable)",
    )
    command.add_argument("--runs-dir", type=Path, help=RUNS_DIR_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aclaudio",
        description="Angular contrastive learning of audio representations: the study's tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of these; COMMAND -h for more"
    )

    download = subcommands.add_parser("download", help="download, verify and unpack a dataset")
    download.add_argument("dataset", choices=["fsdnoisy18k", "esc50"], help="which dataset")
    download.add_argument("--to", type=Path, required=True, help="target folder")
    download.add_argument("--keep-zips", action="store_true", help="keep the archives")
    download.add_argument(
        "--sha256", help="esc50: the archive's expected sha256 (a download's summary gives it)"
    )
    download.set_defaults(run=commands.download)

    convert = subcommands.add_parser("convert", help="write a dataset in the FSDnoisy18k layout")
    convert.add_argument("dataset", choices=["esc50"], help="the dataset SRC holds")
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
    synth.add_argument(
        "--profile", choices=BUILTIN_PROFILES, default="cpu", help="its size (default cpu)"
    )
    synth.add_argument("--seed", type=int, default=0, help="draws every clip (default 0)")
    synth.set_defaults(run=commands.synth)

    data = subcommands.add_parser("data", help="inspect a dataset")
    data_commands = data.add_subparsers(
        dest="data_command", required=True, metavar="WHAT", help="what to show"
    )
    summary = data_commands.add_parser("summary", help="classes, counts, hours, bad files")
    summary.add_argument(
        "dir",
        type=Path,
        nargs="?",
        help="dataset folder (default: the built-in dataset, data/builtin-PROFILE)",
    )
    summary.add_argument(
        "--profile",
        choices=BUILTIN_PROFILES,
        help="without DIR: the built-in dataset of this profile (default cpu)",
    )
    summary.set_defaults(run=commands.data_summary)

    config = subcommands.add_parser("config", help="inspect the settings of a profile")
    config_commands = config.add_subparsers(
        dest="config_command", required=True, metavar="WHAT", help="what to do"
    )
    show = config_commands.add_parser(
        "show",
        help="every --set key with its value and type, marking those that take no effect",
    )
    show.add_argument(
        "--profile", choices=list(PROFILES), default="cpu", help="the profile (default cpu)"
    )
    show.add_argument(
        "--kind", choices=KINDS, default="pretrain", help="the kind of run (default pretrain)"
    )
    show.set_defaults(run=commands.config_show)

    feats = subcommands.add_parser("features", help="build the log-mel cache of a dataset")
    feats.add_argument("dir", type=Path, help="dataset folder")
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
        "--subset",
        choices=["clean", "noisy", "noisy_small", "all"],
        default="clean",
        help="the training clips (default clean)",
    )
    supervised.set_defaults(run=commands.supervised)

    linear = subcommands.add_parser("linear-eval", help="linear evaluation of a pretraining run")
    linear.add_argument("run_dir", type=Path, help="the pretraining run's folder")
    linear.set_defaults(run=commands.linear_eval)

    tune = subcommands.add_parser("finetune", help="fine-tune all layers of a pretraining run")
    tune.add_argument("run_dir", type=Path, help="the pretraining run's folder")
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
    export.add_argument(
        "which",
        metavar="RUN",
        nargs="?",
        help="the run's folder, its id or a unique prefix of it (in --runs-dir); or, instead, "
        "--data-dir with the --profile, --seed and --set it was trained with",
    )
    export.add_argument("--to", type=Path, required=True, help="the file to write (.pt)")
    _add_training_options(export, profile=None, required=False)
    export.set_defaults(run=commands.export)

    grid = subcommands.add_parser("sweep", help="run a grid of the study (skips finished runs)")
    grid.add_argument(
        "grid", choices=["ablation", "comparison", "supervised"], help="the grid (notebooks 02-04)"
    )
    grid.add_argument(
        "--profile", choices=list(PROFILES), default="cpu", help="the profile (default cpu)"
    )
    grid.add_argument("--data-dir", type=Path, required=True, help="dataset folder")
    grid.add_argument("--runs-dir", type=Path, help=RUNS_DIR_HELP)
    grid.add_argument(
        "--executor",
        choices=["inline", "local", "slurm"],
        default="inline",
        help="inline (this process, default), local processes or SLURM jobs",
    )
    grid.add_argument("--parallel", type=int, default=1, help="jobs at a time (local, slurm)")
    grid.add_argument("--partition", help="SLURM partition")
    grid.add_argument("--gpus", type=int, default=1, help="GPUs per SLURM job")
    grid.add_argument("--minutes", type=int, default=240, help="time limit per job")
    grid.set_defaults(run=commands.sweep)

    store = subcommands.add_parser("runs", help="the run store: its runs and results table")
    store_commands = store.add_subparsers(
        dest="runs_command", required=True, metavar="WHAT", help="what to do"
    )
    listing = store_commands.add_parser(
        "list", help="one line per run, finished or not (filters combine)"
    )
    listing.add_argument("--runs-dir", type=Path, help=RUNS_DIR_HELP)
    listing.add_argument("--kind", choices=KINDS, help="only runs of this kind")
    listing.add_argument("--profile", choices=list(PROFILES), help="only runs of this profile")
    listing.add_argument("--objective", help="only runs of this objective (acl, ntxent, ...)")
    listing.add_argument("--seed", type=int, help="only runs of this seed")
    listing.add_argument("--unfinished", action="store_true", help="only unfinished runs")
    listing.set_defaults(run=commands.runs_list)
    shown = store_commands.add_parser(
        "show", help="a run's config, its summary and the files in its folder"
    )
    shown.add_argument(
        "which", metavar="RUN", help="the run's folder, its id or a unique prefix of it"
    )
    shown.add_argument("--runs-dir", type=Path, help=RUNS_DIR_HELP)
    shown.set_defaults(run=commands.runs_show)
    rebuild = store_commands.add_parser(
        "rebuild", help="write results.csv anew from the finished runs' folders"
    )
    rebuild.add_argument("--runs-dir", type=Path, help=RUNS_DIR_HELP)
    rebuild.set_defaults(run=commands.runs_rebuild)

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
    headline.add_argument(
        "--readme", type=Path, default=Path("README.md"), help="the file (default README.md)"
    )
    headline.set_defaults(run=commands.headline)

    progress = subcommands.add_parser(
        "progress",
        help="watch a profile's study: a bar over its runs, a line per run that finishes",
        description="Until every run the profile's notebooks ask for has finished, or until "
        "stopped (SIGTERM, Ctrl-C): a progress bar over them with the time left, and a line "
        "for each run that finishes; then what was trained now and what reused. run_all.sh "
        "starts it beside the notebooks; it only reads the run store.",
    )
    progress.add_argument(
        "--profile", choices=list(PROFILES), default="cpu", help="the study's scale (default cpu)"
    )
    progress.add_argument("--data-dir", type=Path, required=True, help="the study's dataset")
    progress.add_argument("--runs-dir", type=Path, help=RUNS_DIR_HELP)
    progress.add_argument(
        "--only",
        default="",
        help="only the runs of these notebooks, e.g. 02,04 (run_all.sh's --only; default: all)",
    )
    progress.add_argument(
        "--every", type=float, default=5.0, help="seconds between looks at the store (default 5)"
    )
    progress.set_defaults(run=commands.progress)

    bench = subcommands.add_parser("bench", help="run a benchmark, table under results/bench/")
    bench.add_argument(
        "what",
        choices=["features", "loss", "train", "step", "linear"],
        help="what to measure (step: where a cpu pretraining step's time goes)",
    )
    bench.add_argument("--out-dir", type=Path, help="default: results/bench")
    bench.add_argument(
        "--size",
        choices=["smoke", "cpu", "cpu-grid"],
        default="smoke",
        help="linear only: smoke (minutes, the smoke set), cpu (the built-in cpu set, the cpu "
        "study's pretraining runs reused; about 35 minutes on 2 cores) or cpu-grid (the loop's "
        "patches on the cached grid, pretrained small encoder: where the arms part; 10 minutes)",
    )
    bench.add_argument(
        "--data-dir", type=Path, help="linear only: the dataset (default: the size's built-in set)"
    )
    bench.add_argument("--runs-dir", type=Path, help="linear only: " + RUNS_DIR_HELP)
    bench.set_defaults(run=commands.bench)
    return parser
