"""Run by test_train.py in a fresh interpreter (logical CPU devices must exist before TF starts): the
cases of `distributed_cases` on one device and on MirroredStrategy over 2 logical CPUs, same global
batches. Prints one JSON line with the largest differences."""

from __future__ import annotations

import json

from shared import tf_train

tf_train.use_logical_cpus(2)

from tests.ekg.distributed_cases import compare, finetune, reference, search  # noqa: E402


def main() -> None:
    two = tf_train.make_strategy("mirrored")
    assert two.num_replicas_in_sync == 2
    f1, s1 = reference()
    f2, moved = finetune(two)
    s2 = search(two)
    print(json.dumps({"replicas": two.num_replicas_in_sync, "finetune_moved": moved, **compare(f1, f2, s1, s2)}))


if __name__ == "__main__":
    main()
