"""ISTA sparsification of batch-norm scales (Ye, Lu, Lin, Wang, ICLR 2018) in TensorFlow 2.

See ista_tf/README.md. Entry points mirror the original programs:
`python -m ista_tf.cifar10_train`, `python -m ista_tf.cifar10_eval`; plus `ista_tf.bench`, `ista_tf.demo`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # set before any submodule imports TensorFlow
