# System packages edge-emo needs beside Python: PortAudio (sounddevice's audio I/O), gcc (the firmware
# bridge's C decoder tests), Chromium and its WebDriver (the web view's browser tests, `timeline --png`).
# Sourced by the set-up scripts; installs only what is missing.
missing=()
ldconfig -p | grep -q 'libportaudio\.so\.2' || missing+=(libportaudio2)
command -v gcc >/dev/null || missing+=(gcc)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
