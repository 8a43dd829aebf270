"""shared.torch_export: every runtime gives the eval-mode model's outputs (ONNX through onnxruntime and
OpenVINO, torch.export round trip, TorchScript), at another batch size too; missing runtimes are skipped
with a reason; MetricsWriter writes metrics.jsonl and TensorBoard events that read back."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from shared import bench, torch_export  # noqa: E402
from shared.torch_train import MetricsWriter, use_tensorboard_without_tensorflow  # noqa: E402


class SmallNet(nn.Module):
    """Conv + BN (non-trivial running statistics) + a residual add + pooling + FC: the ops of the papers'
    ResNets. In train mode BN would use the batch statistics, so an export that is not in eval mode
    gives other outputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(h + self.bn2(self.conv2(h)))
        return self.fc(h.mean((2, 3)))


@pytest.fixture(scope="module")
def model_and_runtimes(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallNet().eval()
    example = torch.randn(4, 3, 16, 16)
    skipped = []
    fns = torch_export.runtimes(
        model,
        example,
        names=torch_export.TORCH_RUNTIMES[:2] + ("onnxruntime", "openvino"),
        workdir=tmp_path_factory.mktemp("export"),
        log=skipped.append,
    )
    return model, fns, skipped


def test_every_runtime_matches_the_eval_mode_model(model_and_runtimes):
    model, fns, skipped = model_and_runtimes
    assert not skipped, skipped  # the export extra is installed: every runtime must be there
    assert set(fns) == {"eager", "scripted", "onnxruntime", "openvino"}
    for batch in (4, 7, 1):  # the export's batch, and others (dynamic batch dimension)
        x = torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))
        diffs = torch_export.check_equal(fns, model, x)
        print(f"batch {batch}: max |runtime - eager| {diffs}")
        assert max(diffs.values()) < 1e-5
        with torch.no_grad():  # a copy: a train-mode forward updates the running statistics
            train_mode_gap = bench.max_abs_diff(copy.deepcopy(model).train()(x).numpy(), model(x).numpy())
        assert train_mode_gap > 1e-2  # what an export in train mode would get wrong: far above 1e-5


def test_torch_export_round_trip(tmp_path):
    torch.manual_seed(1)
    model = SmallNet().eval()
    path = torch_export.save_exported(model, torch.randn(2, 3, 16, 16), tmp_path / "model.pt2")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    loaded = torch_export.load_exported(path)
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        assert bench.max_abs_diff(loaded(x).numpy(), model(x).numpy()) < 1e-6


def test_missing_runtime_is_skipped_with_its_reason(monkeypatch):
    def missing(path, threads=1):
        raise bench.RuntimeUnavailable("openvino is not installed (test)")

    monkeypatch.setattr(torch_export, "openvino_runner", missing)
    monkeypatch.setattr(torch_export, "export_onnx", lambda model, example, path: path)  # no export needed
    said = []
    fns = torch_export.runtimes(SmallNet(), torch.randn(1, 3, 8, 8), names=("eager", "openvino"), log=said.append)
    assert list(fns) == ["eager"]
    assert said == ["runtime openvino skipped: openvino is not installed (test)"]
    with pytest.raises(ValueError, match="unknown runtime"):
        torch_export.runtimes(SmallNet(), torch.randn(1, 3, 8, 8), names=("tflite",))


def test_metrics_writer_writes_jsonl_and_events_that_read_back(tmp_path):
    with MetricsWriter(tmp_path / "run") as w:
        w.scalars(1, {"loss": 2.5, "top1": 10.0}, stage="pretrain", epoch=0)
        w.scalars(2, {"loss": 1.5, "top1": float("nan")}, stage="pretrain", epoch=1)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [
        {"step": 1, "stage": "pretrain", "epoch": 0, "loss": 2.5, "top1": 10.0},
        {"step": 2, "stage": "pretrain", "epoch": 1, "loss": 1.5, "top1": None},  # JSON has no NaN
    ]
    use_tensorboard_without_tensorflow()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss", "top1"}
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 2.5), (2, 1.5)]
    assert np.isnan(acc.Scalars("top1")[1].value)
    import sys

    assert "tensorflow" not in sys.modules  # tensorboard's stub, not TensorFlow (LLVM clash with torch)


def test_metrics_writer_of_other_ranks_writes_nothing(tmp_path):
    w = MetricsWriter(tmp_path / "run", enabled=False)
    w.scalars(1, {"loss": 1.0})
    w.close()
    assert not (tmp_path / "run").exists()
    custom = MetricsWriter(tmp_path, jsonl_path=tmp_path / "stage.pkl.metrics.jsonl", events_dir=tmp_path / "tb")
    custom.scalars(3, {"loss": 1.0})
    custom.close()
    assert (tmp_path / "stage.pkl.metrics.jsonl").is_file() and list((tmp_path / "tb").glob("events.out.*"))
