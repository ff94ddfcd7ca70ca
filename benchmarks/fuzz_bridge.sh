#!/bin/sh
# Longer fuzzing of the firmware bridge's C decoder (firmware_bridge/c/edge_emo_bridge.h).
# CI runs the seeded loop for 2e5 inputs (tests/bridge/test_c_decoder.py); this runs it for longer on every
# core, then, if clang with libFuzzer is installed (Debian: apt-get install clang libclang-rt-14-dev),
# a coverage-guided libFuzzer run seeded with the wire bytes of PROTOCOL.md's test vectors.
#
# Usage: benchmarks/fuzz_bridge.sh [LIBFUZZER_SECONDS=600] [SEEDED_INPUTS_PER_CORE=10000000]
# Writes build products and the corpus under ${FUZZ_DIR:-/tmp/edge-emo-fuzz}; prints one summary line
# per run. Crashes make the script fail and leave crash-* reproducers in that directory
# (replay one with: $FUZZ_DIR/fuzz_libfuzzer crash-...).
set -eu

SECONDS_LIBFUZZER=${1:-600}
INPUTS=${2:-10000000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC=$HERE/firmware_bridge/c/fuzz_bridge.c
OUT=${FUZZ_DIR:-/tmp/edge-emo-fuzz}
CORES=$(nproc 2>/dev/null || echo 2)
mkdir -p "$OUT/corpus"

FLAGS="-std=c99 -pedantic -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer"
gcc $FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -o "$OUT/fuzz_seeded" "$SRC"
echo "seeded loop: $CORES x $INPUTS inputs under ASan+UBSan (gcc)"
pids=""
for seed in $(seq 1 "$CORES"); do
    "$OUT/fuzz_seeded" "$((seed * 7919 + $(date +%s)))" "$INPUTS" > "$OUT/seeded_$seed.log" 2>&1 &
    pids="$pids $!"
done
status=0
for pid in $pids; do wait "$pid" || status=1; done
cat "$OUT"/seeded_*.log
[ "$status" -eq 0 ] || { echo "seeded loop FAILED (logs in $OUT)"; exit 1; }

if ! command -v clang > /dev/null; then
    echo "clang not found: libFuzzer run skipped"
    exit 0
fi
clang $FLAGS -DEEB_LIBFUZZER -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -o "$OUT/fuzz_libfuzzer" "$SRC"
# Seed corpus: the wire bytes of every test vector in the spec.
python3 - "$HERE/firmware_bridge/PROTOCOL.md" "$OUT/corpus" <<'PY'
import pathlib, re, sys
text = pathlib.Path(sys.argv[1]).read_text()
for i, block in enumerate(re.findall(r"^```vector\n(.*?)^```", text, flags=re.S | re.M)):
    wire = block.split("wire:")[1]
    pathlib.Path(sys.argv[2], f"vector_{i}").write_bytes(bytes.fromhex(" ".join(wire.split())))
PY
echo "libFuzzer: $SECONDS_LIBFUZZER s on $CORES workers"
cd "$OUT"
./fuzz_libfuzzer -max_total_time="$SECONDS_LIBFUZZER" -max_len=1200 -jobs="$CORES" -workers="$CORES" \
    -print_final_stats=1 corpus > libfuzzer.log 2>&1 || { tail -40 fuzz-*.log libfuzzer.log; exit 1; }
grep -h "stat::number_of_executed_units\|Done" fuzz-*.log | sort | uniq -c
echo "corpus: $(ls corpus | wc -l) inputs in $OUT/corpus"
