"""The `aclaudio` command. Every subcommand prints a short JSON summary as its last line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from . import __version__
from .download import DownloadError
from .profiles import PROFILES


def _download(args: argparse.Namespace) -> dict:
    if args.dataset == "esc50":
        from .esc50 import download_esc50

        return download_esc50(args.to, sha256=args.sha256, keep_zips=args.keep_zips)
    if args.sha256 is not None:
        raise ValueError("--sha256 pins the ESC-50 archive; FSDnoisy18k's are md5-checked")
    from .download import download_fsdnoisy18k

    return download_fsdnoisy18k(args.to, keep_zips=args.keep_zips)


def _convert(args: argparse.Namespace) -> dict:
    from .esc50 import convert_esc50

    return convert_esc50(args.src, args.to, label_noise=args.label_noise, seed=args.seed)


def _synth(args: argparse.Namespace) -> dict:
    from .synth import synthesize

    return synthesize(args.to, profile=args.profile, seed=args.seed)


def _print_bad_files(bad_files: list[dict]) -> None:
    print(f"  bad files: {len(bad_files)}")
    for bad in bad_files:
        print(f"    {bad['split']}/{bad['fname']}: {bad['problem']}")


def _data_summary(args: argparse.Namespace) -> dict:
    from .datasets import load_dataset

    summary = load_dataset(args.dir, read_samples=True).summary()
    print(f"{summary['n_classes']} classes: {', '.join(summary['classes'])}")
    for name, subset in summary["subsets"].items():
        print(f"  {name:12s} {subset['clips']:7d} clips {subset['hours']:9.3f} h")
    _print_bad_files(summary["bad_files"])
    return summary


def _features(args: argparse.Namespace) -> dict:
    from .datasets import load_dataset
    from .features import build_cache

    cache = build_cache(
        load_dataset(args.dir), args.preset, cache_dir=args.cache_dir, workers=args.workers
    )
    bad_files = cache.bad_files[["split", "fname", "problem"]].to_dict(orient="records")
    _print_bad_files(bad_files)
    return {"cache": str(cache.path), **cache.meta, "bad_files": bad_files}


def _bench(args: argparse.Namespace) -> dict:
    from . import bench, bench_linear

    run = {
        "features": bench.bench_features,
        "loss": bench.bench_loss,
        "train": bench.bench_train,
        "linear": bench_linear.bench_linear,
    }[args.what]
    table = run(out_dir=args.out_dir)
    print(table.to_string(index=False))
    return {"bench": args.what, "rows": table.to_dict(orient="records")}


def _config_show(args: argparse.Namespace) -> dict:
    from .config import make_config, profile_config, settable, setting_text

    if args.kind == "finetune":
        print("finetune settings are the same for every profile")
        config = make_config("finetune")
    else:
        config = profile_config(args.kind, args.profile)
    values = settable(config)
    types = {key: type(value).__name__ for key, value in values.items()}
    lines = [f"{key}={setting_text(value)}" for key, value in values.items()]  # valid --set args
    width = max(map(len, lines))
    for line, kind in zip(lines, types.values(), strict=True):
        print(f"{line:{width}s}  {kind}")
    return {"kind": args.kind, "profile": args.profile, "settings": values, "types": types}


def _configured(args: argparse.Namespace, kind: str, **fixed):
    from .config import profile_config, with_overrides

    extra = {"seed": args.seed} if args.seed is not None else {}
    base = profile_config(
        kind, args.profile, data_dir=str(args.data_dir.resolve()), **fixed, **extra
    )
    return with_overrides(base, args.set or [])


def _run_summary(run) -> dict:
    return {"run_dir": str(run.path), **run.summary()}


def _pretrain(args: argparse.Namespace) -> dict:
    from .train import pretrain

    return _run_summary(pretrain(_configured(args, "pretrain"), runs_dir=args.runs_dir))


def _supervised(args: argparse.Namespace) -> dict:
    from .train import supervised

    config = _configured(args, "supervised", subset=args.subset)
    return _run_summary(supervised(config, runs_dir=args.runs_dir))


def _linear_eval(args: argparse.Namespace) -> dict:
    from .probe import relinear_evaluation
    from .runs import load_run

    result = relinear_evaluation(load_run(args.run_dir))
    for name in ("micro", "macro"):
        low, high = result[f"test_{name}_low"], result[f"test_{name}_high"]
        print(f"{name} accuracy {result[f'test_{name}']:.2%} (95 % CI {low:.2%} to {high:.2%})")
    return {"run_dir": str(args.run_dir), **result}


def _finetune(args: argparse.Namespace) -> dict:
    from .config import make_config, with_overrides
    from .train import finetune

    config = make_config("finetune", pretrain_run=str(args.run_dir.resolve()))
    config = with_overrides(config, args.set or [])
    return _run_summary(finetune(config, runs_dir=args.runs_dir or args.run_dir.parent))


def _sweep(args: argparse.Namespace) -> dict:
    from . import study, sweep

    grids = {
        "ablation": study.ablation_configs,
        "comparison": lambda p, d: sum(study.comparison_configs(p, d).values(), []),
        "supervised": study.supervised_configs,
    }
    configs = grids[args.grid](args.profile, args.data_dir)
    runs = sweep.run_grid(
        configs, runs_dir=args.runs_dir, executor=args.executor, parallel=args.parallel,
        slurm_partition=args.partition, gpus_per_job=args.gpus, minutes=args.minutes,
    )  # fmt: skip
    return {"grid": args.grid, "runs": len(runs), "run_dirs": [str(r.path) for r in runs]}


def _embed(args: argparse.Namespace) -> dict:
    import numpy as np

    if args.source.is_file():  # an exported encoder: embed any audio files
        return _embed_audio(args)
    from .embeddings import embed_subset
    from .runs import load_run

    arrays = embed_subset(load_run(args.source), args.subset)
    out = args.out or args.source / f"embeddings-{args.subset}.npz"
    np.savez_compressed(out, **arrays)
    return {"out": str(out), "clips": len(arrays["h"]), "dim": arrays["h"].shape[1]}


def _embed_audio(args: argparse.Namespace) -> dict:
    import numpy as np

    from . import hear

    if args.audio is None:
        raise ValueError(f"{args.source}: an exported encoder embeds --audio DIR or --audio CSV")
    model = hear.load_model(args.source)
    embeddings, manifest = hear.embed_files(model, hear.audio_files(args.audio))
    out = args.out or Path("embeddings.npz")
    np.savez_compressed(out, scene=embeddings)
    manifest.to_csv(out.with_suffix(".csv"), index=False)
    bad = manifest[manifest["row"] < 0]
    for path, problem in zip(bad["path"], bad["problem"], strict=True):
        print(f"{path}: {problem}")
    return {"out": str(out), "manifest": str(out.with_suffix(".csv")), "files": len(manifest),
            "embedded": len(embeddings), "dim": model.scene_embedding_size,
            "bad_files": bad[["path", "problem"]].to_dict(orient="records")}  # fmt: skip


def _export(args: argparse.Namespace) -> dict:
    from .export import export_encoder
    from .runs import load_run

    return export_encoder(load_run(args.run_dir), args.to)


def _report(args: argparse.Namespace) -> dict:
    from .report import write_report
    from .study import REPO

    return write_report(args.results or REPO / "results" / args.profile)


def _add_training_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--profile", choices=list(PROFILES), default="cpu")
    command.add_argument("--data-dir", type=Path, required=True, help="dataset folder")
    command.add_argument("--seed", type=int, help="default: the profile's (0)")
    command.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="override a setting, e.g. --set alpha=0.3 --set augment.noise=0 (repeatable)",
    )  # fmt: skip
    command.add_argument(
        "--runs-dir", type=Path, help="run store (default $ACLAUDIO_RUNS or ./runs)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aclaudio",
        description="Angular contrastive learning of audio representations: the study's tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    download = commands.add_parser("download", help="download, verify and unpack a dataset")
    download.add_argument("dataset", choices=["fsdnoisy18k", "esc50"])
    download.add_argument("--to", type=Path, required=True, help="target folder")
    download.add_argument("--keep-zips", action="store_true", help="keep the archives")
    download.add_argument(
        "--sha256", help="esc50: the archive's expected sha256 (a download's summary gives it)"
    )
    download.set_defaults(run=_download)

    convert = commands.add_parser("convert", help="write a dataset in the FSDnoisy18k layout")
    convert.add_argument("dataset", choices=["esc50"])
    convert.add_argument("src", type=Path, help="the ESC-50 folder (meta/esc50.csv, audio/)")
    convert.add_argument("--to", type=Path, required=True, help="target folder")
    convert.add_argument(
        "--label-noise", type=float, default=0.0,
        help="share of the noisy subset given another class at random (0 to 1, default 0)",
    )  # fmt: skip
    convert.add_argument("--seed", type=int, default=0, help="draws the label noise")
    convert.set_defaults(run=_convert)

    synth = commands.add_parser("synth", help="generate the built-in dataset")
    synth.add_argument("--to", type=Path, required=True, help="target folder")
    synth.add_argument("--profile", choices=["smoke", "cpu"], default="cpu")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth)

    data = commands.add_parser("data", help="inspect a dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="WHAT")
    summary = data_commands.add_parser("summary", help="classes, counts, hours, bad files")
    summary.add_argument("dir", type=Path)
    summary.set_defaults(run=_data_summary)

    config = commands.add_parser("config", help="inspect the settings of a profile")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="WHAT")
    show = config_commands.add_parser("show", help="every --set key with its value and type")
    show.add_argument("--profile", choices=list(PROFILES), default="cpu")
    show.add_argument("--kind", choices=["pretrain", "supervised", "finetune"], default="pretrain")
    show.set_defaults(run=_config_show)

    feats = commands.add_parser("features", help="build the log-mel cache of a dataset")
    feats.add_argument("dir", type=Path)
    feats.add_argument("--preset", default="ssl_paper", help="ssl_paper, sup_paper or cpu")
    feats.add_argument(
        "--cache-dir", type=Path, help="default: $ACLAUDIO_CACHE or DIR/.aclaudio-cache"
    )
    feats.add_argument("--workers", type=int, help="processes (default: one per core)")
    feats.set_defaults(run=_features)

    pretrain = commands.add_parser("pretrain", help="self-supervised pretraining + linear eval")
    _add_training_options(pretrain)
    pretrain.set_defaults(run=_pretrain)

    supervised = commands.add_parser("supervised", help="the supervised baseline CNN (CE or ACL)")
    _add_training_options(supervised)
    supervised.add_argument(
        "--subset", choices=["clean", "noisy", "noisy_small", "all"], default="clean"
    )
    supervised.set_defaults(run=_supervised)

    linear = commands.add_parser("linear-eval", help="linear evaluation of a pretraining run")
    linear.add_argument("run_dir", type=Path)
    linear.set_defaults(run=_linear_eval)

    tune = commands.add_parser("finetune", help="fine-tune all layers of a pretraining run")
    tune.add_argument("run_dir", type=Path)
    tune.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a setting, e.g. --set epochs=10 --set lr=0.01")  # fmt: skip
    tune.add_argument("--runs-dir", type=Path, help="default: the pretraining run's store")
    tune.set_defaults(run=_finetune)

    embed = commands.add_parser(
        "embed", help="clip embeddings of a pretraining run's subset, or of any audio files "
        "with an exported encoder"
    )  # fmt: skip
    embed.add_argument("source", type=Path, help="a pretraining RUN_DIR or an exported FILE")
    embed.add_argument("--subset", default="test", help="clean, noisy, noisy_small, all or test")
    embed.add_argument("--audio", type=Path, help="with an exported FILE: a folder or a CSV "
                       "with a 'path' column")  # fmt: skip
    embed.add_argument("--out", type=Path, help="default: RUN_DIR/embeddings-SUBSET.npz, or "
                       "embeddings.npz (+ .csv manifest) with --audio")  # fmt: skip
    embed.set_defaults(run=_embed)

    export = commands.add_parser(
        "export", help="a pretraining run's encoder as one file, to use without its data"
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("--to", type=Path, required=True, help="the file to write (.pt)")
    export.set_defaults(run=_export)

    grid = commands.add_parser("sweep", help="run a grid of the study (skips finished runs)")
    grid.add_argument("grid", choices=["ablation", "comparison", "supervised"])
    grid.add_argument("--profile", choices=list(PROFILES), default="cpu")
    grid.add_argument("--data-dir", type=Path, required=True, help="dataset folder")
    grid.add_argument("--runs-dir", type=Path, help="run store (default $ACLAUDIO_RUNS or ./runs)")
    grid.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline")
    grid.add_argument("--parallel", type=int, default=1, help="jobs at a time (local, slurm)")
    grid.add_argument("--partition", help="SLURM partition")
    grid.add_argument("--gpus", type=int, default=1, help="GPUs per SLURM job")
    grid.add_argument("--minutes", type=int, default=240, help="time limit per job")
    grid.set_defaults(run=_sweep)

    report = commands.add_parser(
        "report",
        help="the executed notebooks as a static web page",
        description="Render RESULTS/notebooks/*.ipynb to RESULTS/report/, and save the notebooks "
        "back with their paths relative to the checkout that ran them.",
    )
    where = report.add_mutually_exclusive_group()
    where.add_argument("--profile", choices=list(PROFILES), default="cpu",
                       help="render results/PROFILE of this checkout (default cpu)")  # fmt: skip
    where.add_argument("--results", type=Path, help="render this results folder instead")
    report.set_defaults(run=_report)

    bench = commands.add_parser("bench", help="run a benchmark, table under results/bench/")
    bench.add_argument("what", choices=["features", "loss", "train", "linear"])
    bench.add_argument("--out-dir", type=Path, help="default: results/bench")
    bench.set_defaults(run=_bench)
    return parser


@contextlib.contextmanager
def _recorded_warnings() -> Iterator[list[str]]:
    """The messages of this package's own warnings raised inside (still shown on stderr as
    usual), for the JSON summary: a skipped checkpoint or an untrained class is never silent."""
    messages: list[str] = []
    with warnings.catch_warnings():
        show = warnings.showwarning

        def record(message, category, *where):
            if category.__module__.startswith(f"{__package__}."):
                messages.append(str(message))
            show(message, category, *where)

        warnings.showwarning = record
        yield messages


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`aclaudio ... | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _extra_providing(module: str) -> str | None:
    """The extra of this package (study, cluster, dev) that installs `module`, from the
    installed metadata; None when no extra does."""
    top = module.partition(".")[0]
    for requirement in metadata.requires("aclaudio") or []:
        name, _, marker = requirement.partition(";")
        package = re.split(r"[<>=!~ \[]", name.strip(), maxsplit=1)[0]
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if extra and package.lower().replace("-", "_") == top.lower():
            return extra.group(1)
    return None


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    with _recorded_warnings() as messages:
        try:
            result = {"ok": True, **args.run(args)}
        except (ValueError, OSError, DownloadError) as error:
            result = {"ok": False, "error": str(error)}
        except ModuleNotFoundError as error:
            extra = _extra_providing(error.name or "")
            if extra is None:
                raise  # not an optional package: a real bug, keep its traceback
            result = {"ok": False, "error": f"this command needs the optional package "
                      f"{error.name!r}: pip install 'aclaudio[{extra}]'"}  # fmt: skip
        if not result["ok"]:
            print(f"aclaudio {args.command}: error: {result['error']}", file=sys.stderr)
    notes = list(dict.fromkeys(result.get("warnings", []) + messages))
    print(json.dumps(result | ({"warnings": notes} if notes else {}), default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
