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
    cfg = dcp.DcpConfig(
        prune_ratio=0.875, nb_stages=1, nb_iters_block=2, nb_iters_layer=1, batch_size=8,
        nb_epochs_rat=0.0005, save_every_picks=3, summ_step=0,
    )  # fmt: skip
    return dcp.DcpLearner(cfg, ResNet("pocketflow", "cifar10", 8, seed=2), split, run_dir, log=lambda s: None,
                          on_pick=on_pick)  # fmt: skip


def test_killed_mid_selection_resumes_to_the_same_choices(tmp_path, digits_train):
    ref = make(tmp_path / "ref", digits_train)
    ref_out = ref.run()
    assert ref_out["status"] == "trained"

    picks = []

    def kill_at_eight(stage, layer, chosen):
        picks.append(layer)
        if len(picks) == 8:  # layer 2 has 2 picks per layer: the 8th lands inside conv #4's selection
            raise Killed

    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        make(run_dir, digits_train, kill_at_eight).run()
    saved = json.loads((run_dir / "progress.json").read_text())
    assert saved["phase"] == "select" and saved["picks"] == 6  # the checkpoint after the 6th pick

    resumed = make(run_dir, digits_train)
    out = resumed.run()
    assert out["kept"] == ref_out["kept"]
    assert len(out["kept"]) == 9 and all(len(v) == 2 or len(v) == 4 or len(v) == 8 for v in out["kept"].values())
    for a, b in zip(resumed.pruned.convs, ref.pruned.convs):
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
        np.testing.assert_allclose(a.kernel.numpy(), b.kernel.numpy(), rtol=1e-4, atol=1e-6)
    assert make(run_dir, digits_train).run()["status"] == "done"  # a finished run is not redone
