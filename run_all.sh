#!/usr/bin/env bash
# The main job: set up the environment when missing, make sure the data and its feature cache
# exist, then execute every notebook in notebooks/ with papermill, in order, and render them as a
# static web page (results/<profile>/report/).
#
#   ./run_all.sh [--profile smoke|cpu|paper] [--data-dir DIR] [--jobs N] [--results DIR]
#                [--only 02,04]
#
# Default: the cpu profile on the built-in dataset, generated on first use under data/.
# --profile paper expects --data-dir pointing at FSDnoisy18k (`aclaudio download fsdnoisy18k`).
# --jobs N: the notebooks' grids run N at a time in local processes (default 1: in the kernel).
# --results DIR: results go to DIR/<profile>/ (default results/; README follows results/cpu/).
# --only 02,04: only the notebooks with these numbers (say, 02 on another dataset).
set -euo pipefail
cd "$(dirname "$0")"

profile=cpu
data_dir=""
jobs=1
results_root=results
only=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --profile) profile=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --results) results_root=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

bash scripts/setup_env.sh
aclaudio() { .venv/bin/aclaudio "$@"; }
# the profile's feature preset, from the table of profiles (an unknown profile stops here)
preset=$(aclaudio config show --profile "$profile" | sed -n 's/^preset=\([^ ]*\).*/\1/p')

if [[ -z $data_dir ]]; then
    if [[ $profile == paper ]]; then
        echo "run_all.sh: the paper profile needs --data-dir (FSDnoisy18k)" >&2; exit 2
    fi
    data_dir=data/builtin-$profile
    aclaudio synth --to "$data_dir" --profile "$profile" --seed 0 | tail -n 1
fi
aclaudio data summary "$data_dir" | tail -n 1 | cut -c1-300
aclaudio features "$data_dir" --preset "$preset" | tail -n 1

export ACLAUDIO_RUNS=${ACLAUDIO_RUNS:-$PWD/runs}   # the run store: finished runs are reused
export ACLAUDIO_JOBS=$jobs   # sweep.run_grid's default executor: local with N processes if N > 1
mkdir -p "$results_root"
results_root=$(realpath "$results_root")
out=$results_root/$profile/notebooks
mkdir -p "$out"
start=$SECONDS
shopt -s nullglob
for notebook in notebooks/[0-9]*.ipynb; do
    name=$(basename "$notebook")
    [[ -n $only && ",$only," != *",${name:0:2},"* ]] && continue
    echo "[run_all] $name ($profile)"
    extra=()
    grep -q '"interactive = ' "$notebook" && extra=(-p interactive False)   # static figures only
    if ! .venv/bin/papermill "$notebook" "$out/$name" -k aclaudio --cwd notebooks \
            -p profile "$profile" -p data_dir "$(realpath "$data_dir")" \
            -p runs_dir "$ACLAUDIO_RUNS" -p results_root "$results_root" "${extra[@]}" \
            --execution-timeout 3600 --log-level WARNING; then
        echo "run_all.sh: notebook $name failed (the error above names the cell); the executed" \
             "copy with its outputs is $out/$name" >&2
        exit 1
    fi
done
aclaudio report --results "$results_root/$profile" | tail -n 1 | cut -c1-300
if [[ $profile == cpu && $results_root == "$(realpath results)" ]]; then
    # README shows the cpu profile's study of this checkout: its headline follows the new tables
    aclaudio headline --results results/cpu --readme README.md | tail -n 1
fi
echo "[run_all] done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: results in" \
     "$results_root/$profile/, the study as a web page in $results_root/$profile/report/index.html"
