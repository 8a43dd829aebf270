"""One worker of the 2-worker DCP test (tests/dcp/conftest.py starts two, TF_CONFIG on loopback ports):
`python -m dcp_tf.resnet_at_cifar10_run --enbl_multi_gpu` under MultiWorkerMirroredStrategy, a tiny
full-prec baseline and then dis-chn-pruned, each worker with its own folders (as on machines without a
shared disk). Prints one JSON line: both entry points' exit statuses and summaries."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared import tf_train  # noqa: E402

tf_train.make_strategy("auto")  # MultiWorkerMirroredStrategy from TF_CONFIG, before TensorFlow's runtime starts

from tests.dcp.tiny_job import TINY, entry_point  # noqa: E402


def main(root: str) -> int:
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    here = os.path.join(root, f"worker{task}")
    paths = ["--save_path", f"{here}/models/model.ckpt", "--save_path_eval", f"{here}/models_eval/model.ckpt",
             "--log_dir", f"{here}/logs", "--dcp_save_path", f"{here}/dcp/model.ckpt",
             "--dcp_save_path_eval", f"{here}/dcp_eval/model.ckpt"]  # fmt: skip
    out = {"task": task}
    out["full_prec"] = entry_point(*TINY, *paths, "--enbl_multi_gpu", "--learner", "full-prec", "--nb_iters_train", "4")
    out["dcp"] = entry_point(*TINY, *paths, "--enbl_multi_gpu", "--learner", "dis-chn-pruned")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
