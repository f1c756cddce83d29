#!/usr/bin/env bash
# Set up cuecraft in ./.venv: no root, no apt, only PyPI. Safe to run again.
#   scripts/setup.sh          the tool
#   scripts/setup.sh --dev    the tool plus the test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# tinysoundfont declares pyaudio (live playback only), which does not build without apt headers.
"${pip[@]}" --no-deps tinysoundfont==0.3.7
if [ "${1:-}" = "--dev" ]; then
    "${pip[@]}" -e ".[dev]"
else
    "${pip[@]}" -e .
fi
