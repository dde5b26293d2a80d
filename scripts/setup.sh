#!/usr/bin/env bash
# Set up trainlab in ./.venv on a fresh machine that has Python 3.10+.
#
#   scripts/setup.sh        the library and the `trainlab` command
#   scripts/setup.sh dev    the same plus the test tools (pytest, ruff), the extras the tests
#                           exercise (Ray, TensorBoard) and torchvision for the doctor's tests
#
# PyTorch: when the machine has no NVIDIA GPU, the CPU build is installed (about 200 MB
# instead of several GB of CUDA libraries): first from PyTorch's CPU wheel index, and where
# that index cannot be reached, the release trainlab is tested with, which a local wheelhouse
# may provide. An existing torch in the venv is kept. Set TRAINLAB_TORCH to override the
# requirement (e.g. TRAINLAB_TORCH="torch==2.5.1").
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "trainlab needs Python 3.10 or newer; $PY is $("$PY" --version 2>&1)" >&2; exit 2; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if [ -n "${TRAINLAB_TORCH:-}" ]; then
    "${PIP[@]}" install "$TRAINLAB_TORCH"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" install "torch>=2.1"
  else
    "${PIP[@]}" install --retries 0 --timeout 20 \
        --index-url https://download.pytorch.org/whl/cpu "torch>=2.1" 2>/dev/null \
      || "${PIP[@]}" install "torch==2.13.*"
  fi
fi

if [ "${1:-}" = "dev" ]; then
  # torchvision must match the torch already installed: a plain `pip install torchvision`
  # may replace the CPU torch with a newer CUDA build. The installed torch is pinned.
  torch_version=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')
  pin=$(mktemp)
  echo "torch==$torch_version" > "$pin"
  if ! .venv/bin/python -c 'import torchvision' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      "${PIP[@]}" install -c "$pin" torchvision
    else
      "${PIP[@]}" install --retries 0 --timeout 20 -c "$pin" \
          --index-url https://download.pytorch.org/whl/cpu torchvision 2>/dev/null \
        || "${PIP[@]}" install -c "$pin" torchvision
    fi
  fi
  "${PIP[@]}" install -c "$pin" -e ".[dev,ray,tensorboard]"
  rm -f "$pin"
else
  "${PIP[@]}" install -e .
fi
