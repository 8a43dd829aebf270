"""The README's driver (the original `train_cifar.py`): the search stage, then fine-tuning.

    python -m ekg_tf2.train_cifar --gpu_id 0 --arch ResNet-56 --dataset CIFAR10 \\
        --search_target_rate 0.45 --train_path ../test --data_dir DIR [--Knowledge]

Both stages run in this one process (the original started `pruning.py` and `train.py` as
subprocesses), each resumable: a finished search is not redone, an interrupted one continues at its
next iteration, and fine-tuning resumes from its last checkpoint. Fine-tuning starts from
`<train_path>/slimmed_params.pkl`. As in the original at HEAD, `--Knowledge` (memory-bank
fine-tuning, full EKG) is off unless passed: the default reproduces the poster's "Ensemble / None" row.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ekg_tf2 import cli, pruning, train
from shared.errors import main_guard


def build_parser():
    p = pruning.build_parser(target_default=0.45, prog="python -m ekg_tf2.train_cifar")
    cli.add_finetune_flags(p)
    return p


def run(args, log=print) -> dict:
    cli.check_common(args)
    searched = pruning.run_search_stage(args, log)
    ft_args = type(args)(**vars(args))
    ft_args.trained_param = str(Path(args.train_path) / "slimmed_params.pkl")
    info = {k: v for k, v in searched.items() if k not in ("search", "model", "slimmed")}
    result = train.run(ft_args, log, search=info)
    return {"search": searched, "finetune": result}


@main_guard
def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
