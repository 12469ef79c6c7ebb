#!/usr/bin/env bash
# Create the virtual environment and install TinyRAG into it (idempotent).
#   bash deploy/setup.sh          # the app
#   bash deploy/setup.sh dev      # the app + test and lint tools
# torch and torchvision go first, in one pip call, pinned together by deploy/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
extras=${1:-}

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -c deploy/constraints.txt "torch==2.14.1" "torchvision==0.29.1"
"${pip[@]}" install -c deploy/constraints.txt -e ".${extras:+[$extras]}"
echo "Installed TinyRAG into $VENV"
