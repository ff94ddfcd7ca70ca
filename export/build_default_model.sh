#!/usr/bin/env bash
# Rebuild the bundled default model (edge_emo/models/default.bundle) with the project's own pipeline, and
# score the same recipe on unseen speakers for the README. Needs the `train` extra and the dev data.
# Usage: bash export/build_default_model.sh [DATA_ROOT (default ../shared/data)]
# Recipe (docs/QUALITY.md): a 2 x 128 GRU pretrained on LibriSpeech only (masked-span reconstruction,
# 12 epochs), then every weight fine-tuned on all labeled clips (30 epochs, Adam 1e-3, MSE), each clip heard
# every epoch plain or through a microphone gain of -20 dB, +12 dB or a random -20..+12 dB.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
LABELED=$DATA/emo_speech_dev
UNLABELED=$DATA/speech_unlabeled
BUILD=build/default-model
GAINS=-20,12,random
mkdir -p "$BUILD"

# 1. Pretraining on unlabeled audio only: no labeled speaker is heard, so step 2 can hold any of them out.
edge-emo pretrain "$UNLABELED" --hidden 128 --out "$BUILD/pre-libri-h128.safetensors"

# 2. The yardstick: 4-fold speaker cross-validation of the recipe (every speaker held out once), beside the
#    frozen head and eGeMAPS functionals + ridge: all labels, all labels under a random microphone gain, and
#    50 labels against the same network from scratch (the runs of docs/QUALITY.md).
CV=(--cv speakers --folds 4 --init "$BUILD/pre-libri-h128.safetensors" --train-gains=$GAINS --workers 1)
edge-emo experiment "$LABELED" "${CV[@]}" --budgets 1000 --draws 1 --baseline-draws 1 --baseline-until 50 \
    --full-finetune-from 50 --out "$BUILD/cv-all"
edge-emo experiment "$LABELED" "${CV[@]}" --budgets 1000 --draws 1 --baseline-draws 1 --baseline-until 50 \
    --full-finetune-from 50 --no-reference --eval-gain random --out "$BUILD/cv-all-random-gain"
edge-emo experiment "$LABELED" "${CV[@]}" --budgets 50 --draws 3 --baseline-draws 3 --full-finetune-from 50 \
    --out "$BUILD/cv-50"

# 3. The shipped model: the recipe on all 956 labeled clips, exported to int8.
edge-emo finetune "$LABELED" --init "$BUILD/pre-libri-h128.safetensors" --full --train-gains=$GAINS \
    --out "$BUILD/default-h128-full-aug.safetensors"
edge-emo export "$BUILD/default-h128-full-aug.safetensors" --out edge_emo/models/default.bundle --precision int8

# 4. Gain robustness of the shipped bundle: the same clips at -20, 0, +12 dB and at a random gain.
python -m benchmarks.gain_robustness edge_emo/models/default.bundle "$LABELED" --out "$BUILD/gain.json"
