#!/usr/bin/env bash
# The cpu profile's headline comparison (notebook 02: random init, NT-Xent and ACL paired by
# seed, with the length curve and the reduction control) on a second dataset, then whether its
# differences point the same way as the study's in results/cpu/.
#
#   scripts/second_dataset.sh [DATA_DIR]
#
# DATA_DIR: any dataset in the FSDnoisy18k layout. Default: the built-in generator with another
# seed (1), a set of the same classes whose every clip is new: no real recordings can be
# downloaded on the machine the study was run on. Results go to results/second-dataset/cpu/,
# the comparison of directions to results/second-dataset/directions.md. About 40 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=${1:-data/builtin-cpu-seed1}
if [[ $# -eq 0 ]]; then
    bash scripts/setup_env.sh
    .venv/bin/aclaudio synth --to "$data_dir" --profile cpu --seed 1 | tail -n 1
fi
./run_all.sh --profile cpu --data-dir "$data_dir" --results results/second-dataset --only 02
.venv/bin/python - "$data_dir" > results/second-dataset/directions.md <<'PYTHON'
import sys
from pathlib import Path

from aclaudio.study.directions import directions

print("# Notebook 02 on two datasets: do the differences point the same way?\n")
print(directions("results/cpu", "results/second-dataset/cpu",
                 ("built-in set (study)", Path(sys.argv[1]).name)))
PYTHON
cat results/second-dataset/directions.md
