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
