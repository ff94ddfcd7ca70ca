#!/usr/bin/env bash
# The device side on aarch64, without a board: an arm64 Debian Bookworm root file system (the base of
# Raspberry Pi OS 64-bit) run under qemu user-mode emulation on an x86-64 Debian host. Proves that
# `pip install edge-emo` resolves aarch64 wheels and that the runtime works there; timings are meaningless
# (emulated), so none are reported. Slow (an hour or more the first time): not part of the per-commit CI.
#
# Usage, as root on an x86-64 Debian/Ubuntu host with the training environment:
#   HOST_PYTHON=.venv-test/bin/python bash benchmarks/aarch64/run_qemu.sh [WORK_DIR]
# WORK_DIR (default /var/tmp/edge-emo-arm64) keeps the root file system between runs. Builds the committed
# state (git archive HEAD). Writes benchmarks/aarch64/SUMMARY.md and leaves the full logs in WORK_DIR/share.
#
# Steps: host packages (qemu-user-static, debootstrap, binfmt-support); the qemu-aarch64 binfmt_misc handler
# (mounting binfmt_misc if needed: needs root, and a kernel that allows it inside containers); debootstrap;
# on the host, the wheel, bundles exported with torch, inputs and the host's results (host_side.py prepare);
# in the arm64 chroot, a venv with `pip install edge-emo` from PyPI's aarch64 wheels, then the features and
# runtime and personalize tests, device_check.py, `edge-emo evaluate` on both bundles, `edge-emo listen --input sample
# --fast --json` and `edge-emo bench --quick --out bench.json`; on the host, the comparison and the summary.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
WORK=${1:-/var/tmp/edge-emo-arm64}
HOST_PYTHON=${HOST_PYTHON:-$REPO/.venv-test/bin/python}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOTFS=$WORK/rootfs
SHARE=$WORK/share
SUMMARY=$REPO/benchmarks/aarch64/SUMMARY.md
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }

echo "== host packages"
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

echo "== binfmt_misc: aarch64 binaries run through qemu-aarch64-static"
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  echo "== debootstrap arm64 bookworm into $ROOTFS (emulated second stage: ~15 min)"
  debootstrap --arch arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,libportaudio2,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR"
fi

echo "== host side: wheel, bundles, inputs, host results"
rm -rf "$SHARE"
mkdir -p "$SHARE/src" "$SHARE/checkout"
git -C "$REPO" archive HEAD | tar -x -C "$SHARE/src"
# Only the tests and the pytest configuration: edge_emo must be imported from the installed wheel.
git -C "$REPO" archive HEAD tests pyproject.toml | tar -x -C "$SHARE/checkout"
"$HOST_PYTHON" -m pip wheel -q --no-deps -w "$SHARE/dist" "$SHARE/src"
(cd "$REPO" && PYTHONPATH="$REPO" OMP_NUM_THREADS=1 "$HOST_PYTHON" benchmarks/aarch64/host_side.py prepare "$SHARE")

echo "== arm64 chroot"
mkdir -p "$ROOTFS/mnt/share"
cleanup() {
  for m in mnt/share dev/shm dev/pts dev proc; do
    mountpoint -q "$ROOTFS/$m" && umount -l "$ROOTFS/$m"
  done
  return 0
}
trap cleanup EXIT
cleanup  # mounts left behind by an interrupted run
mount --bind "$SHARE" "$ROOTFS/mnt/share"
mount -t proc proc "$ROOTFS/proc"
# No /sys: with the host's, onnxruntime's cpuinfo crashes under qemu (SIGSEGV on import); without it,
# it only warns that it cannot read the CPU lists.
mount --bind /dev "$ROOTFS/dev"
mount -t devpts devpts "$ROOTFS/dev/pts" -o newinstance
mount -t tmpfs tmpfs "$ROOTFS/dev/shm"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# The host's CA bundle for pip: behind a TLS-inspecting proxy the chroot's own bundle lacks the proxy's CA.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS/etc/ssl/certs/host-ca-bundle.crt"

set +e
chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  OMP_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt /bin/bash -s > "$SHARE/chroot.log" 2>&1 <<'EOF'
set -x
S=/mnt/share
uname -m
python3 --version
rm -rf /opt/venv && python3 -m venv /opt/venv || exit 10
# no extras: what a board installs; pytest and hypothesis only to run the tests
/opt/venv/bin/pip install $S/dist/edge_emo-*.whl pytest hypothesis > $S/pip-install.log 2>&1 || exit 11
/opt/venv/bin/pip freeze > $S/pip-freeze.txt
/opt/venv/bin/python -I $S/checkout/tests/boards/device_check.py $S/inputs $S/aarch64.npz \
  $S/bundles/fp32.bundle $S/bundles/int8.bundle > $S/device-check.json; echo "device_check=$?" >> $S/status
for p in fp32 int8; do
  /opt/venv/bin/edge-emo evaluate $S/bundles/$p.bundle $S/corpus --json > $S/aarch64-evaluate-$p.json
  echo "evaluate_$p=$?" >> $S/status
done
/opt/venv/bin/edge-emo --help > $S/help.txt; echo "help=$?" >> $S/status
/opt/venv/bin/edge-emo listen --input sample --fast --json > $S/listen.jsonl; echo "listen=$?" >> $S/status
# the bench's table goes to stdout, its results as JSON to --out (torch absent: its rows are skipped)
/opt/venv/bin/edge-emo bench --quick --out $S/bench.json > $S/bench.md 2>&1; echo "bench=$?" >> $S/status
# the device side's tests: no torch in them (their bundles come from the host)
cd $S/checkout && EDGE_EMO_TEST_BUNDLES=$S/runtime-bundles /opt/venv/bin/python -m pytest \
  tests/features tests/runtime tests/personalize \
  -p no:cacheprovider -q -rs > $S/pytest.log 2>&1
echo "pytest=$?" >> $S/status
EOF
chroot_status=$?
set -e
echo "chroot exited $chroot_status; logs in $SHARE"

echo "== comparison and summary"
(cd "$REPO" && PYTHONPATH="$REPO" "$HOST_PYTHON" benchmarks/aarch64/host_side.py compare "$SHARE") > "$SHARE/compare.json" ||
  echo '"not available: the aarch64 run did not finish"' > "$SHARE/compare.json"
touch "$SHARE/status" "$SHARE/pytest.log" "$SHARE/pip-freeze.txt"
# What the bench's JSON says about where it ran (no numbers), or why there is none.
bench_json_facts() {
  "$HOST_PYTHON" - "$SHARE/bench.json" <<'PY' 2>&1 | tail -1
import json, sys
r = json.load(open(sys.argv[1]))
m = r["machine"]
libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
print(f"wrote valid JSON ({len(json.dumps(r))} characters, top-level keys {', '.join(r)}); machine: arch {m['arch']}, {libs}; torch absent: {m['libraries']['torch'] is None}.")
PY
}
versions=$(grep -iE '^(onnxruntime|onnx|numpy|opensmile|sounddevice|soxr|soundfile|typer|edge.emo)[=@ ]' "$SHARE/pip-freeze.txt" | sed 's/^/    /')
{
  echo "# edge-emo on aarch64 (qemu user-mode emulation)"
  echo
  echo "Made by \`benchmarks/aarch64/run_qemu.sh\` on $(date -u +%Y-%m-%d) from commit $COMMIT."
  echo "An arm64 Debian Bookworm root file system (the base of Raspberry Pi OS 64-bit; glibc"
  echo "$(chroot "$ROOTFS" ldd --version | head -1 | awk '{print $NF}'), $(chroot "$ROOTFS" python3 --version)) run through"
  echo "$(qemu-aarch64-static --version | head -1) on an x86-64 host. No timings: emulation says nothing about a board's speed."
  echo
  echo "## What was run"
  echo
  echo "- \`pip install edge-emo\` (the wheel of this commit, no extras) into a fresh venv, dependencies from"
  echo "  PyPI's aarch64 wheels. Resolved:"
  echo
  echo "$versions"
  echo
  echo "- \`tests/boards/device_check.py\` on bundles exported on the host (torch stays on the workstation):"
  echo "  openSMILE eGeMAPS features of a WAV, fp32 and int8 utterance intensities of fixed feature clips."
  echo "  Compared with the same run on the x86 host below."
  echo "- \`edge-emo evaluate\` of both bundles on a small synthetic labeled corpus (macro-F1 and MAE below)."
  echo "- \`edge-emo listen --input sample --fast --json\` (the bundled default model): $(wc -l < "$SHARE/listen.jsonl" 2>/dev/null || echo no) JSON updates."
  echo "- \`edge-emo bench --quick --out bench.json\` (the bundled default model; its numbers are not reported: emulated):"
  echo "  $(bench_json_facts)"
  echo "- pytest on aarch64: \`$(grep -E '^\+ .*-m pytest' "$SHARE/chroot.log" | tail -1 | sed 's/^+ //')\`"
  echo
  echo "## Results"
  echo
  echo "Exit statuses: $(tr '\n' ' ' < "$SHARE/status")(chroot script: $chroot_status)"
  echo
  echo "aarch64 vs the x86 host (largest absolute differences: \`features\` all eGeMAPS values, \`fp32\`/\`int8\`"
  echo "utterance intensities of the same feature clips; \`features_over_1_percent\`: the columns and frames that"
  echo "differ by more than 1%; evaluate: metrics of both runs; listen: the two outputs on the shipped sample):"
  echo
  echo '```json'
  "$HOST_PYTHON" -m json.tool "$SHARE/compare.json" || cat "$SHARE/compare.json"
  echo '```'
  echo
  echo "pytest:"
  echo
  echo '```'
  # counts only: the duration is emulated time
  grep -E "^(SKIPPED|FAILED|ERROR)|passed|failed|error" "$SHARE/pytest.log" | tail -20 | sed -E 's/ in [0-9.]+s.*$//' 
  echo '```'
  echo
  echo "The formant difference is explained in [FORMANTS.md](FORMANTS.md) (written by hand, kept across reruns)."
} > "$SUMMARY"
cat "$SUMMARY"
[ "$chroot_status" -eq 0 ] && ! grep -qv '=0$' "$SHARE/status"
