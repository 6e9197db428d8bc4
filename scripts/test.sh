#!/usr/bin/env bash
# Install everything the tests need and run them: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  # The browser tests drive Debian's chromium (playwright cannot download its own browser here).
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: /usr/bin/chromium is missing and cannot be installed: browser tests will be skipped" >&2
  fi
fi
python3 -m pip install -q -r requirements.txt -r requirements-dev.txt
python3 -m pytest "$@"
# The exactness tests once more as if on a CPU whose two weight layouts round apart (an AMD EPYC's MKL
# does, an Intel Xeon's may not): an exact comparison across layouts then fails here, on any machine.
REGARD_LAYOUT_ROUNDING=1 python3 -m pytest -q tests/test_checkpoint.py tests/test_layout.py tests/test_search.py \
  tests/test_decoding.py tests/test_batching.py
