#!/usr/bin/env bash
# Set up the device runtime (no torch) in .venv and run the main job on the bundled default model:
# `edge-emo listen` on the microphone, or on the shipped speech sample when the machine has no microphone.
# Usage: bash scripts/demo.sh [extra listen options, e.g. --json]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/system-packages.sh

VENV=.venv
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q .

if "$VENV/bin/edge-emo" devices >/dev/null 2>&1; then
  exec "$VENV/bin/edge-emo" listen "$@"
fi
echo "no microphone found: streaming the shipped sample in real time instead" >&2
exec "$VENV/bin/edge-emo" listen --input sample "$@"
