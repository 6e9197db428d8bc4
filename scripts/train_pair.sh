#!/usr/bin/env bash
# Issue 7's experiment: the post-LN baseline and pre-LN, same data, recipe, budget and seed.
# The budget is a step count (20,500 batches of <= 4,096 tokens: 10,000 in the third session, 3,500
# in each of the fourth, fifth and sixth; neither the learning-rate schedule nor the data order depends
# on the budget, so a run resumed with a larger one goes on as a longer run would), not wall time: the cores
# are shared, so minutes would measure the machine's load rather than the recipe.
# Starts both runs in the background (one torch thread each, so they share the two cores equally),
# or resumes them from <runs-dir>/{post,pre}ln/last.pt. Logs: <runs-dir>/{post,pre}ln.log.
#   bash scripts/train_pair.sh [RUNS_DIR] [extra train.py flags...]
# RUNS_DIR defaults to ../regard-runs: outside the work tree, so a fresh checkout keeps the runs.
# Six snapshots are kept (four until the sixth session), so ship_pair.sh can average up to six.
# Names and numbers: half the pairs that have one get a substituted copy in epochs 0-3, then every such
# pair gets two (the name-copy test lagged the other bars at step 6,000; set before epoch 4 began).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-../regard-runs}"; shift || true
D="${DATA:-../shared/data}"
mkdir -p "$RUNS"
# Large blocks straight from mmap, so freed activations go back to the OS: without it glibc's heap
# fragments over batches of varying shapes and each run grew to 6 GB of RSS in 15 minutes.
export MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=1048576
for norm in post pre; do
  nohup nice -n 10 python3 train.py --norm "$norm" --out-dir "$RUNS/${norm}ln" \
    --train-path "$D/tatoeba/train.tsv:1,$D/extra/multi30k_train.tsv:2,$D/extra/wmt_news_2008_2012.tsv:2,$D/extra/europarl_v7_first3k.tsv:1,$D/extra/ntrex128.tsv:2,$D/extra/tico19.tsv:2" \
    --dev-path "$D/tatoeba/dev.tsv,$D/ood/multi30k_val.tsv,$D/ood/newstest2013.tsv" --dev-limit 500 \
    --vocab-size 9000 --split-elision --byte-fallback --aug-rate 0.5 --late-aug-epoch 4 --late-aug-rate 2 --threads 1 \
    --max-steps 20500 --time-budget-min 100000 --eval-every-min 20 --keep-snapshots 6 "$@" >> "$RUNS/${norm}ln.log" 2>&1 &
  echo "started $norm-LN run in $RUNS/${norm}ln (log $RUNS/${norm}ln.log)"
done
