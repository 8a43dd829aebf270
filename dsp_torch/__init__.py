"""Dynamic Structure Pruning (Park et al., AAAI 2023) in PyTorch. See dsp_torch/README.md."""

import warnings

# TorchScript is deprecated upstream but is the released models' format and our deployment format.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
