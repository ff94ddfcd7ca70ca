#!/usr/bin/env bash
# Rebuild the bundled default model (edge_emo/models/default.bundle) with the project's own pipeline, and
# measure the same recipe on unseen speakers for the README. Needs the `train` extra and the dev data.
# Usage: bash export/build_default_model.sh [DATA_ROOT (default ../shared/data)]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
LABELED=$DATA/emo_speech_dev
UNLABELED=$DATA/speech_unlabeled
BUILD=build/default-model
mkdir -p "$BUILD"

# 1. The recipe on a speaker-disjoint split: train on 80% of the speakers, score on the other 20%.
edge-emo pretrain "$LABELED" "$UNLABELED" --split train --out "$BUILD/pre-split.safetensors"
edge-emo finetune "$LABELED" --split train --init "$BUILD/pre-split.safetensors" --out "$BUILD/ft-split.safetensors"
edge-emo export "$BUILD/ft-split.safetensors" --out "$BUILD/split.bundle" --precision int8
edge-emo evaluate "$BUILD/split.bundle" "$LABELED" --split val | tee "$BUILD/split-metrics.md"
edge-emo evaluate "$BUILD/split.bundle" "$LABELED" --split val --json > "$BUILD/split-metrics.json"

# 2. The shipped model: the same recipe on all of the data.
edge-emo pretrain "$LABELED" "$UNLABELED" --out "$BUILD/pre-all.safetensors"
edge-emo finetune "$LABELED" --init "$BUILD/pre-all.safetensors" --out "$BUILD/ft-all.safetensors"
edge-emo export "$BUILD/ft-all.safetensors" --out edge_emo/models/default.bundle --precision int8
