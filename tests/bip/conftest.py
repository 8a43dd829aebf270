"""One intra-op thread per test process: the machine's cores are shared, and oversubscribed torch
threads run many times slower than one."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# train.py on 32 digits images (2 steps of 16), 50 test images
TINY_ARGS = ["--dataset", "digits", "--train-limit", "32", "--batch-size", "16", "--test-limit", "50"]


@pytest.fixture(scope="package")
def pretrained(tmp_path_factory):
    """(result root, checkpoint) of one epoch of dense pretraining on TINY_ARGS (shared by the train.py tests)."""
    from bip_torch.args import parse_args
    from bip_torch.train import run

    root = tmp_path_factory.mktemp("bip")
    res = run(parse_args(["--configs", "configs/CIFAR10/pretrain.yml", "--epochs", "1", "--exp-name", "p",
                          "--result-dir", str(root), *TINY_ARGS]))  # fmt: skip
    return root, res["run_dir"] / "checkpoint" / "checkpoint.pth.tar"
