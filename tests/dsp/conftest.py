"""DSP tests run torch on one thread: the suite's framework groups run side by side on 2 cores, and
two torch threads per process on a shared core spend most of their time waiting for each other (a
tiny pretraining stage took 2.4x the CPU time with 2 threads as with 1 on a loaded machine)."""

import importlib.util

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
