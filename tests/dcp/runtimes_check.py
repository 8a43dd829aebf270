"""Run in the background by tests/dcp/conftest.py (logical CPUs must be set before TensorFlow starts):
1. DCP on 2 mirrored CPU replicas against one device on the same global batch (a block fine-tuning step
   and a channel score);
2. a tiny DCP job end to end through the entry point on the 2 mirrored CPU replicas
   (`--enbl_multi_gpu --logical_cpus 2`): full-prec baseline, then dis-chn-pruned;
3. a tiny DCP job end to end with `--xla` (one device: XLA compiles whole steps only there), the paper
   variant from the same baseline.
Prints the time of each part on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared import tf_train  # noqa: E402

tf_train.use_logical_cpus(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dcp_tf import dcp  # noqa: E402
from dcp_tf.models import ResNet  # noqa: E402
from shared.data import load_image_classification  # noqa: E402
from tests.dcp.tiny_job import TINY, entry_point  # noqa: E402


def replicas_agree() -> dict:
    split = load_image_classification("digits", "train")
    x = tf.constant((split.images[:8].astype(np.float32) - 128.0) / 64.0)
    y = tf.constant(split.labels[:8].astype(np.int32))
    pretrained = ResNet("pocketflow", "cifar10", 8, seed=4)
    out = {}
    learners = {}
    for name, strategy, per_replica in (
        ("one", tf.distribute.get_strategy(), 8),
        ("two", tf_train.make_strategy("mirrored"), 4),
    ):
        cfg = dcp.DcpConfig(nb_stages=1, batch_size=per_replica, summ_step=0)
        L = dcp.DcpLearner(cfg, pretrained, split, tempfile.mkdtemp(), strategy=strategy, log=lambda s: None)
        for c in L.pruned.convs:
            c.kernel.assign(c.kernel * 0.9 + 0.01)
        stage = L.stages[0]
        L._block_step(stage)(x, y)
        L._score_step(stage, 3, 1)(x, y)
        learners[name] = L
        out[name] = {"replicas": strategy.num_replicas_in_sync, "iters": L._iters(10000)}
    one, two = learners["one"], learners["two"]
    diffs = [float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(one.pruned.variables, two.pruned.variables)]
    s1, s2 = one.scores["3"].numpy(), two.scores["3"].numpy()
    out.update(
        max_var_diff=max(diffs),
        moved=float(
            np.abs(one.pruned.convs[3].kernel.numpy() - (pretrained.convs[3].kernel.numpy() * 0.9 + 0.01)).max()
        ),
        score_rel_diff=float(np.abs(s1 - s2).max() / np.abs(s1).max()),
        pick_one=int(np.argmax(s1)),
        pick_two=int(np.argmax(s2)),
    )
    return out


def main() -> int:
    root = tempfile.mkdtemp(prefix="dcp-runtimes-")
    paths = ["--save_path", f"{root}/models/model.ckpt", "--save_path_eval", f"{root}/models_eval/model.ckpt",
             "--log_dir", f"{root}/logs", "--records", f"{root}/records"]  # fmt: skip
    t0 = time.time()
    out = {"replicas": replicas_agree()}
    print(f"replicas {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    mirrored = ["--enbl_multi_gpu", "--logical_cpus", "2"]
    out["mirrored_full_prec"] = entry_point(*TINY, *paths, *mirrored, "--learner", "full-prec", "--nb_iters_train", "4")
    out["mirrored"] = entry_point(*TINY, *paths, *mirrored, "--learner", "dis-chn-pruned",
                                  "--dcp_save_path", f"{root}/mirrored/model.ckpt",
                                  "--dcp_save_path_eval", f"{root}/mirrored_eval/model.ckpt")  # fmt: skip
    print(f"mirrored {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    # no stage fine-tuning (0 epochs): 7 XLA compilations (3 scores, 3 sub-problems, the final step)
    out["xla"] = entry_point(*TINY, *paths, "--xla", "--dcp_paper_stage_epochs", "0", "--learner", "dis-chn-pruned",
                             "--dcp_variant", "paper",
                             "--resnet_def", "pocketflow", "--dcp_save_path", f"{root}/xla/model.ckpt",
                             "--dcp_save_path_eval", f"{root}/xla_eval/model.ckpt")  # fmt: skip
    print(f"xla {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    if out["xla"]["summary"]:
        rec = json.loads(open(out["xla"]["summary"]["record"]).read())
        out["xla"]["config_xla"] = rec["config"]["xla"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
