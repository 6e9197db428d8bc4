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
