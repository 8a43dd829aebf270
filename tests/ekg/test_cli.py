"""Bad input: one clear message, a non-zero exit, nothing finished overwritten; the params format's
round trip and restricted loading; the entry points' flags."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ekg_tf2 import params, pruning, test, train, train_cifar  # noqa: E402
from ekg_tf2.models import ResNet  # noqa: E402


def _err(capsys, main, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.fixture(scope="module")
def r8_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "r8.pkl"
    params.write_params(path, params.model_params(ResNet("ResNet-8", 10, seed=1)))
    return path


@pytest.mark.parametrize("rate", ["0", "1.5", "-0.2", "nan"])
def test_search_target_rate_outside_0_1(capsys, tmp_path, rate):
    err = _err(capsys, train_cifar.main, ["--search_target_rate", rate, "--train_path", str(tmp_path)])
    assert "--search_target_rate must be in (0.0, 1.0]" in err


def test_unknown_arch_dataset_and_mismatched_pair(capsys):
    assert "unknown --arch 'ResNet-99'" in _err(capsys, pruning.main, ["--arch", "ResNet-99"])
    assert "unknown --dataset 'MNIST'" in _err(capsys, pruning.main, ["--dataset", "MNIST"])
    assert "does not go with --dataset ILSVRC" in _err(capsys, pruning.main, ["--dataset", "ILSVRC"])


def test_missing_data_folder(capsys, r8_pkl, tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNING_DATA_DIR", raising=False)
    err = _err(capsys, test.main, ["--arch", "ResNet-8", "--trained_param", str(r8_pkl)])
    assert "no CIFAR10 folder given" in err and "--data_dir" in err
    err = _err(capsys, test.main, ["--arch", "ResNet-8", "--trained_param", str(r8_pkl), "--data_dir", str(tmp_path)])
    assert "CIFAR" in err or "cifar" in err


def test_pkl_of_another_architecture_names_the_layer(capsys, r8_pkl, tmp_path):
    err = _err(capsys, test.main, ["--arch", "ResNet-20", "--trained_param", str(r8_pkl)])
    assert "does not match ResNet-20" in err and "BasicBlock0.1" in err
    p = params.read_params(r8_pkl)
    p["BasicBlock0.0/conv2/kernel:0"] = np.zeros([3, 3, 7, 16], "f")  # inner width 16 -> 7 inputs
    bad = tmp_path / "bad.pkl"
    params.write_params(bad, p)
    err = _err(capsys, test.main, ["--arch", "ResNet-8", "--trained_param", str(bad)])
    assert "layer BasicBlock0.0/conv2/kernel:0 has shape (3, 3, 7, 16), expected (3, 3, 16, 16)" in err


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_pickle_with_anything_but_arrays_is_refused(capsys, tmp_path):
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"conv/kernel:0": Evil()}))
    err = _err(capsys, test.main, ["--arch", "ResNet-8", "--trained_param", str(bad)])
    assert "refusing to load builtins.print" in err and "this ran" not in capsys.readouterr().out
    nan = tmp_path / "nan.pkl"
    nan.write_bytes(pickle.dumps({"conv/kernel:0": np.full([3, 3, 3, 16], np.nan, "f")}))
    assert "non-finite" in _err(capsys, test.main, ["--arch", "ResNet-8", "--trained_param", str(nan)])


def test_readme_filename_gets_a_hint(capsys, tmp_path):
    (tmp_path / "trained_params.pkl").write_bytes(b"")
    err = _err(capsys, test.main, ["--trained_param", str(tmp_path / "trained_param.pkl")])
    assert "trained_params.pkl" in err and "README" in err


def test_params_round_trip_keeps_the_original_names_and_shapes(r8_pkl):
    p = params.read_params(r8_pkl)
    assert {"conv/kernel:0", "bn/moving_variance:0", "BasicBlock1.0/conv3/kernel:0", "fc/biases:0"} <= set(p)
    assert p["bn/gamma:0"].shape == (1, 1, 1, 16) and p["fc/kernel:0"].shape == (64, 10)
    model = params.model_from_params("ResNet-8", "CIFAR10", p)
    back = params.model_params(model)
    assert all(np.array_equal(back[k], p[k]) for k in p)


def test_entry_points_keep_the_original_flags_and_defaults():
    a = train_cifar.build_parser().parse_args([])
    assert (a.arch, a.dataset, a.search_target_rate, a.search_step, a.search_batch_size) == (
        "ResNet-56",
        "CIFAR10",
        0.45,
        0.2,
        256,
    )
    assert (a.train_epoch, a.batch_size, a.learning_rate, a.decay_rate, a.weight_decay) == (100, 128, 0.01, 0.2, 5e-4)
    assert a.decay_points == [0.3, 0.6, 0.8] and a.Knowledge is False and a.num_teacher == 5
    assert pruning.build_parser().parse_args([]).search_target_rate == 0.30
    assert train.build_parser().parse_args(["--trained_param", "x"]).val_batch_size == 256
