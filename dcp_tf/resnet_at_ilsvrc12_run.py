"""PocketFlow's `nets/resnet_at_ilsvrc12_run.py`: ResNet on ILSVRC-12 (1001 classes, index 0 = background)
with the full-prec or dis-chn-pruned learner. `python -m dcp_tf.resnet_at_ilsvrc12_run --help` lists every flag."""

import sys

from dcp_tf.cli import run
from shared.errors import main_guard


@main_guard
def main(argv=None) -> int:
    return run("ilsvrc12", argv)


if __name__ == "__main__":
    sys.exit(main())
