"""What each subcommand does: a function of the parsed arguments that returns the JSON-able
summary the command prints last (parser.py binds each to its subcommand)."""

from __future__ import annotations

import argparse
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

    return synthesize(args.to, profile=args.profile, seed=args.seed)


def _print_bad_files(bad_files: list[dict]) -> None:
    print(f"  bad files: {len(bad_files)}")
    for bad in bad_files:
        print(f"    {bad['split']}/{bad['fname']}: {bad['problem']}")


def data_summary(args: argparse.Namespace) -> dict:
    from aclaudio.data.datasets import load_dataset

    summary = load_dataset(args.dir, read_samples=True).summary()
    print(f"{summary['n_classes']} classes: {', '.join(summary['classes'])}")
    for name, subset in summary["subsets"].items():
        print(f"  {name:12s} {subset['clips']:7d} clips {subset['hours']:9.3f} h")
    _print_bad_files(summary["bad_files"])
    return summary


def features(args: argparse.Namespace) -> dict:
    from aclaudio.data.cache import build_cache
    from aclaudio.data.datasets import load_dataset

    cache = build_cache(
        load_dataset(args.dir), args.preset, cache_dir=args.cache_dir, workers=args.workers
    )
    bad_files = cache.bad_files[["split", "fname", "problem"]].to_dict(orient="records")
    _print_bad_files(bad_files)
    return {"cache": str(cache.path), **cache.meta, "bad_files": bad_files}


def bench(args: argparse.Namespace) -> dict:
    from aclaudio.cli import bench, bench_linear

    run = {
        "features": bench.bench_features,
        "loss": bench.bench_loss,
        "train": bench.bench_train,
        "linear": bench_linear.bench_linear,
    }[args.what]
    table = run(out_dir=args.out_dir)
    print(table.to_string(index=False))
    return {"bench": args.what, "rows": table.to_dict(orient="records")}


def config_show(args: argparse.Namespace) -> dict:
    from aclaudio.training.config import make_config, profile_config, settable, setting_text

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
    from aclaudio.training.config import profile_config, with_overrides

    extra = {"seed": args.seed} if args.seed is not None else {}
    base = profile_config(
        kind, args.profile, data_dir=str(args.data_dir.resolve()), **fixed, **extra
    )
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
    from aclaudio.training.config import make_config, with_overrides

    config = make_config("finetune", pretrain_run=str(args.run_dir.resolve()))
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
    from aclaudio.training.runs import load_run

    return export_encoder(load_run(args.run_dir), args.to)


def report(args: argparse.Namespace) -> dict:
    from aclaudio.data import folders
    from aclaudio.study.report import write_report

    return write_report(args.results or folders.results() / args.profile)


def headline(args: argparse.Namespace) -> dict:
    from aclaudio.study.readme import write_readme_headline

    changed = write_readme_headline(args.readme, args.results)
    return {"readme": str(args.readme), "results": str(args.results), "changed": changed}
