"""A tiny DCP job through the entry point, in this process (for the background runtime checks)."""

from __future__ import annotations

import contextlib
import io
import json

# ResNet-8 on the digits, 1 stage, ratio 0.9375 (1 / 2 / 4 input channels kept of 16 / 32 / 64); every
# schedule x 0.0002: PocketFlow's final fine-tuning 250 x 0.0002 x 1437 / 16 -> 5 steps on 2 replicas,
# the paper's stage and final fine-tuning 1 step each
TINY = ["--dataset_name", "digits", "--resnet_size", "8", "--batch_size", "8", "--summ_step", "0",
        "--dcp_prune_ratio", "0.9375", "--dcp_nb_stages", "1", "--dcp_nb_iters_block", "4",
        "--dcp_nb_iters_layer", "0", "--dcp_paper_stage_epochs", "1", "--dcp_paper_select_samples", "8",
        "--dcp_paper_final_epochs", "2", "--nb_epochs_rat", "0.0002", "--dcp_save_every_picks", "0",
        "--no_export"]  # fmt: skip


def entry_point(*flags) -> dict:
    """One run of `python -m dcp_tf.resnet_at_cifar10_run FLAGS`: its exit status, summary and stderr tail."""
    from dcp_tf import resnet_at_cifar10_run as entry

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = entry.main(list(flags))
    lines = out.getvalue().strip().splitlines()
    return {"code": code, "summary": json.loads(lines[-1]) if code == 0 and lines else None,
            "stderr": err.getvalue()[-2000:]}  # fmt: skip
