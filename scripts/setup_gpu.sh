#!/usr/bin/env bash
# GPU machines: two environments, because TensorFlow's CUDA wheels and PyTorch's pin different CUDA
# libraries.
#   .venv-torch  the project + PyTorch/torchvision (their default CUDA builds) + dev tools
#   .venv-tf     the project + tensorflow[and-cuda] + dev tools
# Use them with PY=.venv-torch/bin/python (dsp_torch, bip_torch) or PY=.venv-tf/bin/python (ista_tf,
# ekg_tf2, dcp_tf), e.g. `PY=.venv-torch/bin/python make dsp-bench`. DDP over several GPUs:
#   .venv-torch/bin/torchrun --nproc_per_node 4 -m dsp_torch.cifar_dsp -l 56 -g 4 -r 5e-4 --data-dir DIR
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
for env in torch tf; do
  extra=$([ "$env" = torch ] && echo "torch,dev" || echo "tf-gpu,dev")
  if [ ! -x ".venv-$env/bin/python" ]; then
    "$PYTHON" -m venv ".venv-$env"
  fi
  ".venv-$env/bin/python" -m pip install --upgrade pip
  ".venv-$env/bin/python" -m pip install -e ".[$extra]"
done
.venv-torch/bin/python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())"
.venv-tf/bin/python -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))"
