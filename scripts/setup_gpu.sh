#!/usr/bin/env bash
# GPU machines: two environments, because TensorFlow's CUDA wheels and PyTorch's pin different CUDA
# libraries.
#   .venv-torch  the project + PyTorch/torchvision (their default CUDA builds) + export runtimes + dev tools
#   .venv-tf     the project + tensorflow[and-cuda] + export runtimes + dev tools
# `GPU=1 make <target>` runs every target with the environment of its framework (e.g.
# `GPU=1 make dsp-cifar10-table`, `GPU=1 make demo`); `bash scripts/setup_gpu.sh torch` (or tf) builds one.
# DDP over several GPUs:
#   .venv-torch/bin/torchrun --nproc_per_node 4 -m dsp_torch.cifar_dsp -l 56 -g 4 -r 5e-4 --data-dir DIR
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
envs=("$@")
[ ${#envs[@]} -gt 0 ] || envs=(torch tf)
for env in "${envs[@]}"; do
  case $env in torch|tf) ;; *) echo "setup_gpu.sh: unknown environment '$env' (expected torch or tf)" >&2; exit 2 ;; esac
  extra=$([ "$env" = torch ] && echo "torch,dev,export" || echo "tf-gpu,dev,export")
  if [ ! -x ".venv-$env/bin/python" ]; then
    "$PYTHON" -m venv ".venv-$env"
  fi
  ".venv-$env/bin/python" -m pip install --upgrade pip
  ".venv-$env/bin/python" -m pip install -e ".[$extra]"
  if [ "$env" = torch ]; then
    .venv-torch/bin/python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())"
  else
    .venv-tf/bin/python -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))"
  fi
  touch ".venv-$env/.installed-stamp"
done
