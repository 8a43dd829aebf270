"""Resume: a DCP run killed in the middle of a layer's channel selection continues from its last
checkpoint to the same channel choices and the same weights as a run that was never interrupted."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

tf = pytest.importorskip("tensorflow")

from dcp_tf import dcp  # noqa: E402
from dcp_tf.models import ResNet  # noqa: E402


class Killed(Exception):
    pass


def make(run_dir, split, on_pick=None):
    """The paper variant on a PreResNet-8 at 0.9375 (conv2 of 3 blocks: 1 + 2 + 4 picks): its state is the
    richest (Nesterov slots of stage and layer optimisers, warm-start kernels, the stage-0 reference)."""
    cfg = dcp.DcpConfig(
        variant="paper", prune_ratio=0.9375, nb_stages=1, batch_size=8, paper_stage_epochs=0.02 / 0.001,
        paper_select_samples=8, paper_final_epochs=10, nb_epochs_rat=0.001, save_every_picks=2, summ_step=0,
    )  # fmt: skip
    return dcp.DcpLearner(cfg, ResNet("paper", "cifar10", 8, seed=2), split, run_dir, log=lambda s: None,
                          on_pick=on_pick)  # fmt: skip


def test_killed_mid_selection_resumes_to_the_same_choices(tmp_path, digits_train):
    ref = make(tmp_path / "ref", digits_train)
    ref_out = ref.run()
    assert ref_out["status"] == "trained"

    picks = []

    def kill_at_five(stage, layer, chosen):
        picks.append(layer)
        if len(picks) == 5:  # pick 1: block 0's conv2, 2-3: block 1's, 4-7: block 2's; the 5th is inside it
            raise Killed

    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        make(run_dir, digits_train, kill_at_five).run()
    saved = json.loads((run_dir / "progress.json").read_text())
    assert saved["phase"] == "select" and saved["picks"] == 4 and len(saved["chosen"]) == 1  # after pick 4, mid-layer

    resumed = make(run_dir, digits_train)
    out = resumed.run()
    assert out["kept"] == ref_out["kept"]
    assert sorted(len(v) for v in out["kept"].values()) == [1, 2, 4]
    for a, b in zip(resumed.pruned.convs, ref.pruned.convs):
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
        np.testing.assert_allclose(a.kernel.numpy(), b.kernel.numpy(), rtol=1e-4, atol=1e-6)
    assert make(run_dir, digits_train).run()["status"] == "done"  # a finished run is not redone
