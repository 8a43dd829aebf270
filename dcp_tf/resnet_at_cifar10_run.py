"""PocketFlow's `nets/resnet_at_cifar10_run.py`: ResNet on CIFAR-10 with the full-prec or dis-chn-pruned
learner. `python -m dcp_tf.resnet_at_cifar10_run --help` lists every flag."""

import sys

from dcp_tf.cli import run
from shared.errors import main_guard


@main_guard
def main(argv=None) -> int:
    return run("cifar10", argv)


if __name__ == "__main__":
    sys.exit(main())
