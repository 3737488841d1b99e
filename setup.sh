#!/usr/bin/env bash
# Set up everything zoo needs on a fresh Debian machine; safe to run again (it skips what is done).
#   - Debian's dataset-fashion-mnist package (IDX files in /usr/share/datasets/fashion-mnist)
#   - a virtual environment in .venv with the pinned torch/torchvision that install from local disk
#   - zoo itself, editable, with its test extras
set -euo pipefail
cd "$(dirname "$0")"
LOG=.setup.log
: > "$LOG"
run() { "$@" >>"$LOG" 2>&1 || { echo "setup failed: $* (see $LOG)"; tail -20 "$LOG"; exit 1; }; }

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing dataset-fashion-mnist with apt-get"
  run $SUDO apt-get update -qq
  run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  run "$PY" -m venv .venv
fi
case "$(uname -m)" in
  x86_64) TORCH="torch==2.14.1 torchvision==0.29.1" ;;
  aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *) TORCH="torch torchvision" ;;
esac
WANT_TORCH="${TORCH%% *}"; WANT_TORCH="${WANT_TORCH#torch==}"
HAVE_TORCH="$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [ "$HAVE_TORCH" != "$WANT_TORCH" ]; then
  echo "setup: installing $TORCH into .venv (a few minutes the first time)"
  run .venv/bin/pip install $TORCH
fi
run .venv/bin/pip install -e ".[test]" -c constraints.txt   # the exact versions the tests ran with
echo "setup: ok ($(.venv/bin/python -c 'import torch, zoo; print("zoo", zoo.__version__, "torch", torch.__version__)'))"
