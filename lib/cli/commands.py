"""What each subcommand does: a function of the parsed arguments that returns the JSON-able
summary the command prints last (parser.py binds each to its subcommand)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def download(args: argparse.Namespace) -> dict:
    if args.dataset == "esc50":
        from aclaudio.data.esc50 import download_esc50

        return download_esc50(args.to, sha256=args.sha256, keep_zips=args.keep_zips)
    if args.sha256 is not None:
        raise ValueError("--sha256 pins the ESC-50 archive; FSDnoisy18k's are md5-checked")
    from aclaudio.data.download import download_fsdnoisy18k

    return download_fsdnoisy18k(args.to, keep_zips=args.keep_zips)


def convert(args: argparse.Namespace) -> dict:
    from aclaudio.data.esc50 import convert_esc50

    return convert_esc50(args.src, args.to, label_noise=args.label_noise, seed=args.seed)


def synth(args: argparse.Namespace) -> dict:
    from aclaudio.data.synth import synthesize

    summary = synthesize(args.to, profile=args.profile, seed=args.seed)
    clips, hours = summary["clips"], summary["hours"]
    print(
        f"{'reused' if summary['reused'] else 'made'} the built-in dataset ({args.profile}, seed "
        f"{args.seed}) in {args.to}: {len(summary['classes'])} classes, {clips['train']} "
        f"training clips ({hours['train']:g} h), {clips['test']} test clips"
    )
    return summary


def _print_bad_files(bad_files: list[dict]) -> None:
    print(f"  bad files: {len(bad_files)}")
    for bad in bad_files:
        print(f"    {bad['split']}/{bad['fname']}: {bad['problem']}")


def data_summary(args: argparse.Namespace) -> dict:
    from aclaudio.data.datasets import load_dataset

    if args.dir is not None and args.profile is not None:
        raise ValueError("give DIR or --profile (the built-in dataset of a profile), not both")
    root = args.dir if args.dir is not None else _builtin_dataset(args.profile or "cpu")
    summary = load_dataset(root, read_samples=True).summary()
    print(f"{summary['n_classes']} classes: {', '.join(summary['classes'])}")
    subsets = summary["subsets"]
    for name, subset in subsets.items():
        print(f"  {name:12s} {subset['clips']:7d} clips {subset['hours']:9.3f} h")
    _print_bad_files(summary["bad_files"])
    print(
        f"{root}: {summary['n_classes']} classes, {subsets['all']['clips']} training clips "
        f"({subsets['all']['hours']:g} h), {subsets['test']['clips']} test clips, "
        f"{len(summary['bad_files'])} bad files"
    )
    return summary


def _builtin_dataset(profile: str) -> Path:
    """data/builtin-PROFILE of the current folder, where run_all.sh generates it."""
    from aclaudio.data import folders

    root = folders.data() / f"builtin-{profile}"
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no built-in dataset here; make it with: "
            f"aclaudio synth --to {root} --profile {profile}"
        )
    return root


def features(args: argparse.Namespace) -> dict:
    from aclaudio.data.cache import build_cache
    from aclaudio.data.datasets import load_dataset

    cache = build_cache(
        load_dataset(args.dir), args.preset, cache_dir=args.cache_dir, workers=args.workers
    )
    bad_files = cache.bad_files[["split", "fname", "problem"]].to_dict(orient="records")
    _print_bad_files(bad_files)
    meta = cache.meta
    print(
        f"feature cache {cache.path}: {meta['clips']} clips, {meta['frames']} frames of "
        f"{meta['preset']['n_mels']} mel bands (preset {meta['preset_name']}), "
        f"{len(bad_files)} bad files"
    )
    return {"cache": str(cache.path), **meta, "bad_files": bad_files}


def bench(args: argparse.Namespace) -> dict:
    from aclaudio.cli import bench, bench_linear, bench_step

    if args.what == "linear":
        from aclaudio.data import folders

        data_dir, runs_dir = args.data_dir, args.runs_dir
        if args.size.startswith("cpu"):  # the study's dataset and store: its runs are reused
            from aclaudio.data.synth import synthesize

            if data_dir is None:  # run_all.sh's built-in dataset (made when missing)
                data_dir = Path("data/builtin-cpu")
                synthesize(data_dir, profile="cpu", seed=0)
            runs_dir = folders.runs(runs_dir)
        table = bench_linear.bench_linear(
            size=args.size, data_dir=data_dir, runs_dir=runs_dir, out_dir=args.out_dir
        )
    else:
        run = {
            "features": bench.bench_features,
            "loss": bench.bench_loss,
            "train": bench.bench_train,
            "step": bench_step.bench_step,
        }
        table = run[args.what](out_dir=args.out_dir)
    print(table.to_string(index=False))
    return {"bench": args.what, "rows": table.to_dict(orient="records")}


def config_show(args: argparse.Namespace) -> dict:
    from aclaudio.cli.runs_table import print_settings
    from aclaudio.training.config import profile_config

    if args.kind == "finetune":
        print(f"finetune settings of the {args.profile} profile (a fine-tuning takes its run's)")
    config = profile_config(args.kind, args.profile)
    return {"kind": args.kind, "profile": args.profile, **print_settings(config)}


def _configured(args: argparse.Namespace, kind: str, **fixed):
    from aclaudio.training.config import profile_config, with_overrides

    extra = {"seed": args.seed} if args.seed is not None else {}
    profile = args.profile or "cpu"  # export's --profile is None unless given
    base = profile_config(kind, profile, data_dir=str(args.data_dir.resolve()), **fixed, **extra)
    return with_overrides(base, args.set or [])


def _run_summary(run) -> dict:
    return {"run_dir": str(run.path), **run.summary()}


def pretrain(args: argparse.Namespace) -> dict:
    from aclaudio.recipes.pretrain import pretrain

    return _run_summary(pretrain(_configured(args, "pretrain"), runs_dir=args.runs_dir))


def supervised(args: argparse.Namespace) -> dict:
    from aclaudio.recipes.supervised import supervised

    config = _configured(args, "supervised", subset=args.subset)
    return _run_summary(supervised(config, runs_dir=args.runs_dir))


def linear_eval(args: argparse.Namespace) -> dict:
    from aclaudio.evaluation.probe import relinear_evaluation
    from aclaudio.training.runs import load_run

    result = relinear_evaluation(load_run(args.run_dir))
    for name in ("micro", "macro"):
        low, high = result[f"test_{name}_low"], result[f"test_{name}_high"]
        print(f"{name} accuracy {result[f'test_{name}']:.2%} (95 % CI {low:.2%} to {high:.2%})")
    return {"run_dir": str(args.run_dir), **result}


def finetune(args: argparse.Namespace) -> dict:
    from aclaudio.recipes.finetune import finetune
    from aclaudio.training.config import profile_config, with_overrides
    from aclaudio.training.runs import load_run

    # the pretraining run's profile sizes the fine-tuning (paper: the authors' 200 epochs)
    profile = load_run(args.run_dir).config.profile
    config = profile_config("finetune", profile, pretrain_run=str(args.run_dir.resolve()))
    config = with_overrides(config, args.set or [])
    return _run_summary(finetune(config, runs_dir=args.runs_dir or args.run_dir.parent))


def sweep(args: argparse.Namespace) -> dict:
    from aclaudio.recipes import sweep
    from aclaudio.study import grids

    configs_of = {
        "ablation": grids.ablation_configs,
        "comparison": lambda p, d: sum(grids.comparison_configs(p, d).values(), []),
        "supervised": grids.supervised_configs,
    }
    configs = configs_of[args.grid](args.profile, args.data_dir)
    runs = sweep.run_grid(
        configs,
        runs_dir=args.runs_dir,
        executor=args.executor,
        parallel=args.parallel,
        slurm_partition=args.partition,
        gpus_per_job=args.gpus,
        minutes=args.minutes,
    )
    return {"grid": args.grid, "runs": len(runs), "run_dirs": [str(r.path) for r in runs]}


def embed(args: argparse.Namespace) -> dict:
    import numpy as np

    if args.source.is_file():  # an exported encoder: embed any audio files
        return _embed_audio(args)
    from aclaudio.evaluation.embeddings import embed_subset
    from aclaudio.training.runs import load_run

    arrays = embed_subset(load_run(args.source), args.subset)
    out = args.out or args.source / f"embeddings-{args.subset}.npz"
    np.savez_compressed(out, **arrays)
    return {"out": str(out), "clips": len(arrays["h"]), "dim": arrays["h"].shape[1]}


def _embed_audio(args: argparse.Namespace) -> dict:
    import numpy as np

    from aclaudio import hear
    from aclaudio.cli import embed_audio

    if args.audio is None:
        raise ValueError(f"{args.source}: an exported encoder embeds --audio DIR or --audio CSV")
    model = hear.load_model(args.source)
    embeddings, manifest = embed_audio.embed_files(model, embed_audio.audio_files(args.audio))
    out = args.out or Path("embeddings.npz")
    np.savez_compressed(out, scene=embeddings)
    manifest.to_csv(out.with_suffix(".csv"), index=False)
    bad = manifest[manifest["row"] < 0]
    for path, problem in zip(bad["path"], bad["problem"], strict=True):
        print(f"{path}: {problem}")
    return {
        "out": str(out),
        "manifest": str(out.with_suffix(".csv")),
        "files": len(manifest),
        "embedded": len(embeddings),
        "dim": model.scene_embedding_size,
        "bad_files": bad[["path", "problem"]].to_dict(orient="records"),
    }


def export(args: argparse.Namespace) -> dict:
    from aclaudio.export import export_encoder
    from aclaudio.study.progress import label

    run = _run_to_export(args)
    summary = export_encoder(run, args.to)
    print(f"exported {run.id} ({label(run)}) to {summary['to']}, its card {summary['card']}")
    return summary


def _run_to_export(args: argparse.Namespace):
    """The run export names: RUN (folder, id or id prefix), or the finished run of the config
    that --data-dir, --profile, --seed and --set give."""
    from aclaudio.cli.runs_table import lookup_run
    from aclaudio.training.runs import find_run

    by_config = [args.data_dir, args.profile, args.seed, args.set]
    if args.which is not None:
        if any(value is not None for value in by_config):
            raise ValueError(
                "give RUN or the settings of a run (--data-dir, --profile, --seed, --set), not both"
            )
        return lookup_run(args.which, args.runs_dir)
    if args.data_dir is None:
        raise ValueError(
            "export which run? give RUN (its folder, id or id prefix), or --data-dir DIR with "
            "the --profile, --seed and --set it was trained with"
        )
    run = find_run(_configured(args, "pretrain"), args.runs_dir)
    if not run.finished:
        raise ValueError(
            f"the run of these settings ({run.id}) has not finished in {run.path.parent}; "
            f"train it with: {_pretrain_command(args)}"
        )
    return run


def _pretrain_command(args: argparse.Namespace) -> str:
    """The command that trains the run of export's settings."""
    words = ["aclaudio", "pretrain", "--profile", args.profile or "cpu", "--data-dir"]
    words.append(str(args.data_dir))
    words += ["--seed", str(args.seed)] if args.seed is not None else []
    words += [word for pair in args.set or [] for word in ("--set", pair)]
    words += ["--runs-dir", str(args.runs_dir)] if args.runs_dir is not None else []
    return shlex.join(words)


def runs_list(args: argparse.Namespace) -> dict:
    from aclaudio.cli.runs_table import selected, table_lines
    from aclaudio.data import folders
    from aclaudio.training.results import store_rows

    rows = selected(store_rows(args.runs_dir), args)
    print("\n".join(table_lines(rows)))
    store = folders.runs(args.runs_dir)
    finished = sum(row["finished"] for row in rows)
    print(f"{len(rows)} runs in {store} ({finished} finished, {len(rows) - finished} not)")
    return {"runs_dir": str(store), "count": len(rows), "runs": rows}


def runs_show(args: argparse.Namespace) -> dict:
    from aclaudio.cli.runs_table import lookup_run, show_run

    return show_run(lookup_run(args.which, args.runs_dir))


def runs_rebuild(args: argparse.Namespace) -> dict:
    from aclaudio.data import folders
    from aclaudio.training.results import RESULTS_FILE, rebuild_results

    table = rebuild_results(args.runs_dir)
    return {"results": str(folders.runs(args.runs_dir) / RESULTS_FILE), "rows": len(table)}


def report(args: argparse.Namespace) -> dict:
    from aclaudio.data import folders
    from aclaudio.study.report import write_report

    written = write_report(args.results or folders.results() / args.profile)
    pages, size = len(written["pages"]), written["bytes"] / 1e3
    print(f"report: {pages} pages, {size:,.0f} kB, in {written['report']}")
    return written


def progress(args: argparse.Namespace) -> dict:
    import signal
    import time

    from tqdm.auto import tqdm

    from aclaudio.data import folders
    from aclaudio.study.progress import StudyRuns, summary, watch

    start = time.monotonic()
    notebooks = tuple(n for n in args.only.split(",") if n)
    study = StudyRuns.of(
        args.profile, args.data_dir.resolve(), folders.runs(args.runs_dir), notebooks
    )
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    try:
        for line in watch(study, every=args.every, stop=lambda: bool(stopped)):
            tqdm.write(line)
    except KeyboardInterrupt:
        pass
    wall = time.monotonic() - start
    print(summary(study, wall))
    return {"profile": args.profile, **study.counts(), "wall_seconds": round(wall, 1)}


def headline(args: argparse.Namespace) -> dict:
    from aclaudio.study.readme import write_readme_headline

    changed = write_readme_headline(args.readme, args.results)
    print(f"{args.readme}: headline {'rewritten' if changed else 'unchanged'} from {args.results}")
    return {"readme": str(args.readme), "results": str(args.results), "changed": changed}
