#!/usr/bin/env bash
# Turn the two runs of scripts/train_pair.sh into shipped checkpoints and score them, every score
# stored in the checkpoint's own record (shown in the app's Model tab, printed by training.record):
#   bash scripts/ship_pair.sh [RUNS_DIR] [MOST_AVERAGED]   # ships the mean of the last k <= MOST_AVERAGED
#                                                          # (default 6) snapshots best on the dev mix
#   OUT=/tmp/try LIMIT=20 bash scripts/ship_pair.sh   # a quick dry run: elsewhere, 20 sentences a set
#   NORMS=pre bash scripts/ship_pair.sh                # one of the pair (two such calls can run side by
#                                                      # side with OMP_NUM_THREADS=1 on a 2-core machine)
# Writes checkpoints/regard-fr-en-postln.safetensors and -preln (fp16, about 19.6 MB each, so the
# pair stays under 40 MB; model.checkpoint.DEFAULT_CHECKPOINT names the pre-LN one as the default).
# The out-of-domain sets are scored for the cards only; selection happened on the runs' dev mix.
# Each checkpoint gets its card next to it (scripts/model_card.py: generated from the record).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-../regard-runs}"
AVG="${2:-6}"
D="${DATA:-../shared/data}"
OUT="${OUT:-checkpoints}"
LIMIT="${LIMIT:-}"
for norm in ${NORMS:-post pre}; do
  out="$OUT/regard-fr-en-${norm}ln.safetensors"
  python3 -m training.export "$RUNS/${norm}ln" --average-best-of "$AVG" --out "$out" --dtype float16
  for set in tatoeba/test:tatoeba_test tatoeba/dev:tatoeba_dev ood/multi30k_test2016:multi30k_test2016 \
             ood/flores101_devtest:flores101_devtest ood/newstest2013:newstest2013; do
    python3 evaluate.py --checkpoint "$out" --data "$D/${set%%:*}.tsv" --name "${set##*:}_greedy" --record ${LIMIT:+--limit "$LIMIT"}
  done
  python3 -m training.name_copy --checkpoint "$out" --record --data-root "$D" ${LIMIT:+--n "$LIMIT"}
  python3 scripts/head_alignment.py --checkpoint "$out" --data "$D/tatoeba/train.tsv" --record ${LIMIT:+--align 500 --score "$LIMIT"}
  python3 -m training.sanity --checkpoint "$out" --record
  python3 scripts/model_card.py "$out" > "${out%.safetensors}.md"
done
