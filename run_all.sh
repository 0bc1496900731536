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
# A step's one human line (the line before the command's JSON summary); a failed command has
# said why on stderr, and stops the job.
step() {
    local out
    out=$(aclaudio "$@") || exit 1
    tail -n 2 <<< "$out" | head -n 1
}
# the profile's feature preset, from the table of profiles (an unknown profile stops here)
preset=$(aclaudio config show --profile "$profile" | sed -n 's/^preset=\([^ ]*\).*/\1/p')

if [[ -z $data_dir ]]; then
    if [[ $profile == paper ]]; then
        echo "run_all.sh: the paper profile needs --data-dir (FSDnoisy18k)" >&2; exit 2
    fi
    data_dir=data/builtin-$profile
    step synth --to "$data_dir" --profile "$profile" --seed 0
fi
step data summary "$data_dir"
step features "$data_dir" --preset "$preset"

export ACLAUDIO_RUNS=${ACLAUDIO_RUNS:-$PWD/runs}   # the run store: finished runs are reused
export ACLAUDIO_JOBS=$jobs   # sweep.run_grid's default executor: local with N processes if N > 1
mkdir -p "$results_root"
results_root=$(realpath "$results_root")
out=$results_root/$profile/notebooks
mkdir -p "$out"
start=$SECONDS
minutes() { echo "$(( ($1) / 60 )) min $(( ($1) % 60 )) s"; }
# A bar over the study's runs with the time left, and a line per finished run, from the run store
# (the notebooks train the runs); stopped after the notebooks, it says what was trained and reused.
aclaudio progress --profile "$profile" --data-dir "$(realpath "$data_dir")" --runs-dir "$ACLAUDIO_RUNS" \
    --only "$only" > >(grep --line-buffered -v '^{"ok"') &
watcher=$!
trap 'kill $watcher 2>/dev/null || true' EXIT
shopt -s nullglob
for notebook in notebooks/[0-9]*.ipynb; do
    name=$(basename "$notebook")
    [[ -n $only && ",$only," != *",${name:0:2},"* ]] && continue
    echo "[run_all] $name ($profile)"
    began=$SECONDS
    extra=()
    grep -q '"interactive = ' "$notebook" && extra=(-p interactive False)   # static figures only
    if ! .venv/bin/papermill "$notebook" "$out/$name" -k aclaudio --cwd notebooks \
            -p profile "$profile" -p data_dir "$(realpath "$data_dir")" \
            -p runs_dir "$ACLAUDIO_RUNS" -p results_root "$results_root" "${extra[@]}" \
            --log-level WARNING --no-progress-bar; then
        echo "run_all.sh: notebook $name failed (the error above names the cell and the run);" \
             "the executed copy with its outputs is $out/$name; rerunning continues from the" \
             "finished runs" >&2
        exit 1
    fi
    echo "[run_all] $name done in $(minutes SECONDS-began)"
done
kill -TERM $watcher 2>/dev/null || true
wait $watcher 2>/dev/null || true
step report --results "$results_root/$profile"
if [[ $profile != paper && -z $only ]]; then
    # the whole study's seed-0 encoders, ACL and NT-Xent, each with its model card
    for method in "acl 0.3" "ntxent 1.0"; do
        set -- $method
        step export --profile "$profile" --data-dir "$(realpath "$data_dir")" --runs-dir "$ACLAUDIO_RUNS" \
            --seed 0 --set alpha="$2" --set margin=0.5 \
            --to "$results_root/$profile/encoders/$1-$profile-seed0.pt"
    done
fi
if [[ $profile == cpu && $results_root == "$(realpath results)" ]]; then
    # README shows the cpu profile's study of this checkout: its headline follows the new tables
    step headline --results results/cpu --readme README.md
    # hear.load_model() without a path loads the study's ACL encoder, shipped with the package
    mkdir -p lib/encoders
    cp results/cpu/encoders/acl-cpu-seed0.pt results/cpu/encoders/acl-cpu-seed0.md lib/encoders/
fi
echo "[run_all] done in $(minutes SECONDS-start): results in $results_root/$profile/, the study" \
     "as a web page in $results_root/$profile/report/index.html"
