"""Training machinery: accumulation and DDP equal one process on the same global batch; resume."""

import copy
import os
import subprocess
import sys

import pytest
import torch

from dsp_torch.models import cifar_resnet
from dsp_torch.models.cifar_resnet import CifarResNet
from tests.conftest import REPO

pytestmark = [pytest.mark.torch, pytest.mark.slow]
WORKER = str(REPO / "tests" / "dsp" / "ddp_worker.py")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ddp(out):
    """Both optimisers in 2 gloo processes (torchrun); rank 0 saves {"sgd": ..., "dsp": ...}."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    for _attempt in range(2):  # a crashed launch (not a wrong result) is retried once
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        cmd += ["--master-port", str(_free_port()), WORKER, str(out)]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _assert_close(a, b, atol):
    worst = _max_diff(a, b)
    assert worst < atol, f"max difference {worst}"


def test_accumulation_and_ddp_match_one_process(tmp_path):
    """Plain SGD steps and DSP group-learning steps: one process (in this one), 4 micro-batches, and
    2 gloo processes (one torchrun launch for both optimisers) end at the same weights."""
    from shared.torch_train import DistContext
    from tests.dsp.ddp_worker import DEPTH, train

    torch.manual_seed(0)  # the worker's initial weights
    initial = {k: v for k, v in CifarResNet(DEPTH).state_dict().items() if k.endswith("conv_b.weight")}
    ddp = _run_ddp(tmp_path / "ddp.pt")
    # Float tolerance (oneDNN picks other conv algorithms for other batch sizes: ~1e-5 here); a real
    # mistake (a loss not divided by the micro-batches, a missing all-reduce) shifts weights by the
    # size of a step, which is checked to be much larger.
    tol = 1e-4
    for name, dsp in (("sgd", False), ("dsp", True)):
        single = train(DistContext(), dsp)
        accumulated = train(DistContext(), dsp, accum=4)
        assert _max_diff(initial, {k: single[k] for k in initial}) > 50 * tol
        _assert_close(single, accumulated, tol)
        _assert_close(single, ddp[name], tol)
        assert any(k.endswith(".group") for k in single) == dsp


TINY = ["-l", "20", "--dataset", "digits", "--train-limit", "64", "--test-limit", "100", "-b", "32"]


def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    """Each stage interrupted and resumed ends where an uninterrupted run ends: pretraining and group
    learning stopped after epoch 1 (--stop-after-epoch), fine-tuning interrupted (Ctrl-C) during the
    re-prune at the end of its first cycle, which resumes from the end of the last finished epoch."""
    from dsp_torch import cifar_dsp, cifar_finetune, cifar_pretrain
    from dsp_torch.checkpoints import load_checkpoint
    from dsp_torch.dsp_module import PruneWrapper

    a, b = tmp_path / "a", tmp_path / "b"

    def same(name):
        x, y = load_checkpoint(a / name), load_checkpoint(b / name)
        assert x["best_acc"] == y["best_acc"]
        _assert_close(x["state_dict"], y["state_dict"], 1e-6)

    stages = [
        (cifar_pretrain, ["--epochs", "2"], "resnet20.pkl"),
        (cifar_dsp, ["--epochs", "2", "-g", "2"], "resnet20_G0g2.pkl"),
    ]
    for module, extra, name in stages:
        assert module.main([*TINY, *extra, "--save-dir", str(a)]) == 0
        assert module.main([*TINY, *extra, "--save-dir", str(b), "--stop-after-epoch", "1"]) == 0
        assert module.main([*TINY, *extra, "--save-dir", str(b)]) == 0  # resumes at epoch 2
        same(name)
    lines = (b / "resnet20.pkl.metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # epoch 1 before the interruption, epoch 2 after the resume

    # 3 epochs in cycles of ceil(3 / 2) = 2: prune, epochs 1-2, re-prune (interrupted: the state on
    # disk is that after epoch 1, so epoch 2 is trained again), epoch 3
    fin = [*TINY, "--epochs", "3", "-c", "2", "-g", "2", "-p", "0.4", "--cascade-passes", "1"]
    assert cifar_finetune.main([*fin, "--save-dir", str(a)]) == 0
    real, calls = PruneWrapper.initialize, []

    def interrupt_the_re_prune(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PruneWrapper, "initialize", interrupt_the_re_prune)
    capsys.readouterr()
    assert cifar_finetune.main([*fin, "--save-dir", str(b)]) == 130
    err = capsys.readouterr().err
    assert "holds the finetune stage after epoch 1; run the same command again to resume from there" in err
    monkeypatch.undo()
    assert cifar_finetune.main([*fin, "--save-dir", str(b)]) == 0
    assert "resuming finetune" in capsys.readouterr().out
    same("resnet20_P0g2c0.40.pkl")


def test_accumulation_all_reduces_only_on_the_last_micro_batch(tmp_path):
    """DDP's gradient all-reduce (counted by a communication hook) runs once per step, not once per
    micro-batch: the other micro-batches run under no_sync(). Gradients equal the whole batch's."""
    import torch.distributed as dist

    from shared.torch_train import accumulate_backward

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
        plain = copy.deepcopy(model)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        calls = []

        def counting_hook(state, bucket):
            calls.append(bucket.index())
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        ddp.register_comm_hook(None, counting_hook)
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        accumulate_backward(ddp, torch.nn.CrossEntropyLoss(), x, y, 4, torch.device("cpu"))
        assert len(calls) == 1  # one bucket, reduced once
        torch.nn.functional.cross_entropy(plain(x), y).backward()
        for a, b in zip(model.parameters(), plain.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    finally:
        dist.destroy_process_group()


def test_bf16_precision_runs_the_forward_in_bf16_and_fp32_does_not():
    from shared.torch_train import accumulate_backward

    torch.manual_seed(0)
    model = cifar_resnet(20)
    seen = []
    model.conv_1_3x3.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for precision in ("bf16", "fp32"):
        accumulate_backward(model, torch.nn.CrossEntropyLoss(), x, y, 2, torch.device("cpu"), precision)
    assert seen == [torch.bfloat16] * 2 + [torch.float32] * 2
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
