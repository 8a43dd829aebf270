"""The train.py interface: YAML override rule, result folder and checkpoint contents, --resume of both
optimizers (equal to an uninterrupted run), --evaluate, and the refusals of bad input."""

import math

import pytest
import torch

from bip_torch.args import parse_args
from bip_torch.train import main, row_of, schedule_lr, variant_of
from tests.bip.conftest import TINY_ARGS

pytestmark = pytest.mark.torch
TINY = TINY_ARGS  # the `pretrained` fixture (conftest) ran with these


def test_yaml_values_override_defaults_and_command_line_flags_win():
    a = parse_args(
        [
            "--configs",
            "configs/CIFAR10/bip.yml",
            "--lr",
            "0.01",
            "--k=0.5",
            "--dataset",
            "digits",
            "--source-net",
            __file__,
        ]
    )
    assert (a.lr, a.k, a.dataset) == (0.01, 0.5, "digits")  # given on the command line
    assert (a.wd, a.lr2, a.mask_lr_schedule, a.trainer, a.epochs) == (1e-4, 1e-4, "step", "bilevel", 100)
    assert a.scaled_score_init is True and a.normalize is True and a.arch == "resnet20s"
    a = parse_args(["--configs", "configs/CIFAR10/finetune.yml", "--source-net", __file__])
    assert a.data_fraction == 1.0  # YAML-only keys are kept
    a = parse_args(["--configs", "configs/ImageNet/bip.yml", "--source-net", __file__])
    assert (a.lr, a.batch_size, a.arch, a.num_classes) == (0.01, 200, "ResNet18", 1000)


def test_schedules_have_the_originals_quirks():
    a = parse_args(["--configs", "configs/CIFAR10/bip.yml", "--source-net", __file__])
    assert schedule_lr("cosine", 0, a) == pytest.approx(0.1 * 0.5 * (1 + math.cos(-math.pi / 100)))
    assert schedule_lr("cosine", 0, a) == pytest.approx(0.099975, abs=1e-6)
    # the mask lr follows --lr with the step shape: 0.1 / 0.01 / 0.001 at 0-49 / 50-74 / 75-99
    assert [schedule_lr("step", e, a) for e in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


def test_hydra_is_reported_after_its_finetuning_and_bip_without():
    prune = parse_args(["--configs", "configs/CIFAR10/hydra.yml", "--k", "0.1342", "--source-net", __file__])
    assert variant_of(prune)["method"] == "hydra" and row_of(prune, "CIFAR10") is None  # the prune stage alone
    ft = parse_args(["--configs", "configs/CIFAR10/finetune.yml", "--k", "0.1342", "--source-net", __file__])
    ft.source_method = "hydra"  # what train.py reads from the pruned checkpoint's variant
    assert variant_of(ft)["method"] == "hydra" and row_of(ft, "CIFAR10") == "fig3/cifar10/resnet20/hydra/s86.6"
    ft.source_method = "bip"  # BiP is reported without retraining: a finetuned BiP net has no Fig. 3 row
    assert variant_of(ft)["method"] == "finetune" and row_of(ft, "CIFAR10") is None
    bip = parse_args(["--configs", "configs/CIFAR10/bip.yml", "--k", "0.1342", "--source-net", __file__])
    assert row_of(bip, "CIFAR10") == "fig3/cifar10/resnet20/bip/s86.6"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--k", "0"], "--k must be in (0, 1]"),
        (["--k", "1.5"], "--k must be in (0, 1]"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--trainer", "bilevel_finetune"], "bilevel_finetune"),
        (["--dataset", "ImageNetLMDB"], "ImageNetLMDB"),
        (["--dataset", "CIFAR10", "--data-dir", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--source-net", "/nonexistent/ckpt.pth.tar"], "does not exist"),
    ],
)
def test_bad_input_gives_one_message_and_exit_2(extra, message, tmp_path, capsys):
    torch.save({}, tmp_path / "empty.pt")  # exists: the checks before loading it are what is tested
    argv = ["--arch", "resnet20s", "--exp-mode", "prune", "--layer-type", "unstructured", "--trainer", "bilevel"]
    argv += ["--source-net", str(tmp_path / "empty.pt"), "--result-dir", str(tmp_path), *TINY, *extra]
    if "--source-net" in extra:
        argv = argv[:8] + argv[10:]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_arch_and_layer_type_are_refused(capsys):
    for flag, value in (("--arch", "resnet21"), ("--layer-type", "kernel")):
        with pytest.raises(SystemExit) as exc:
            parse_args(["--exp-mode", "pretrain", flag, value])
        assert exc.value.code == 2
        assert value in capsys.readouterr().err


def _checkpoint(run_dir):
    return torch.load(run_dir / "checkpoint" / "checkpoint.pth.tar", weights_only=True)


def _run(argv):
    from bip_torch.args import parse_args as pa
    from bip_torch.train import run

    return run(pa(argv))


def test_result_folder_and_checkpoint_have_the_original_layout(pretrained):
    root, ckpt_path = pretrained
    assert ckpt_path.parent.parent.name == "0--k-1.0000_trainer-base_epochs-1_arch-resnet20s"
    assert (root / "p" / "pretrain" / "latest_exp" / "checkpoint" / "checkpoint.pth.tar").is_file()
    ck = torch.load(ckpt_path, weights_only=True)
    assert {"epoch", "arch", "state_dict", "best_prec1", "optimizer"} <= set(ck)
    assert ck["epoch"] == 1 and ck["arch"] == "resnet20s" and isinstance(ck["best_prec1"], torch.Tensor)
    assert (ckpt_path.parent / "model_best.pth.tar").is_file()
    assert (ckpt_path.parent.parent / "setup.log").is_file() and (ckpt_path.parent.parent / "metrics.jsonl").is_file()


def test_prune_resume_equals_an_uninterrupted_run_and_restores_both_optimizers(pretrained, tmp_path):
    _, src = pretrained
    common = ["--configs", "configs/CIFAR10/bip.yml", "--k", "0.5", "--source-net", str(src), "--epochs", "2",
              "--result-dir", str(tmp_path), *TINY]  # fmt: skip
    full = _run([*common, "--exp-name", "full"])
    part = _run([*common, "--exp-name", "part", "--stop-after-epoch", "1"])
    assert part["interrupted"]
    ck1 = _checkpoint(part["run_dir"])
    assert ck1["epoch"] == 1 and ck1["mask_optimizer"]["state"]  # the mask optimizer's momentum is saved
    resumed_argv = [a for a in common if a not in ("--source-net", str(src))]
    resumed = _run(
        [*resumed_argv, "--exp-name", "part", "--resume", str(part["run_dir"] / "checkpoint" / "checkpoint.pth.tar")]
    )
    a, b = _checkpoint(full["run_dir"]), _checkpoint(resumed["run_dir"])
    assert a["epoch"] == b["epoch"] == 2
    for key in a["state_dict"]:
        assert torch.allclose(a["state_dict"][key].float(), b["state_dict"][key].float(), atol=1e-6), key
    for name in ("optimizer", "mask_optimizer"):
        for i, st in a[name]["state"].items():
            assert torch.allclose(st["momentum_buffer"], b[name]["state"][i]["momentum_buffer"], atol=1e-6)
    assert b["k"] == 0.5 and b["layer_type"] == "unstructured" and b["variant"]["bip_variant"] == "code"
    # aliasing survives save / load in prune mode: scores equal the weights
    sd = b["state_dict"]
    assert torch.equal(sd["conv1.weight"], sd["conv1.popup_scores"])


def test_finetune_refuses_another_k_or_layer_type_and_evaluate_runs(pretrained, tmp_path, capsys):
    _, src = pretrained
    pr = _run(["--configs", "configs/CIFAR10/hydra.yml", "--k", "0.5", "--layer-type", "filter", "--source-net",
               str(src), "--epochs", "1", "--result-dir", str(tmp_path), "--exp-name", "h", *TINY])  # fmt: skip
    pruned = pr["run_dir"] / "checkpoint" / "checkpoint.pth.tar"
    ft = ["--configs", "configs/CIFAR10/finetune.yml", "--source-net", str(pruned), "--epochs", "1",
          "--result-dir", str(tmp_path), "--exp-name", "f", *TINY]  # fmt: skip
    assert main([*ft, "--k", "0.4", "--layer-type", "filter"]) == 2
    assert "differs from the 0.5" in capsys.readouterr().err
    assert main([*ft, "--k", "0.5", "--layer-type", "channel"]) == 2
    assert "--layer-type channel differs" in capsys.readouterr().err
    assert main([*ft, "--k", "0.5", "--layer-type", "filter", "--evaluate"]) == 0
    out = capsys.readouterr().out
    assert "source net: test acc" in out and "'method': 'hydra'" in out  # HYDRA's numbers: after finetuning
    # a checkpoint of another architecture is refused with its key names
    assert main([*ft, "--k", "0.5", "--layer-type", "filter", "--arch", "resnet32s"]) == 2
    assert "does not fit --arch resnet32s" in capsys.readouterr().err


def test_prune_without_scaled_score_init_warns_and_scales_weights(pretrained, tmp_path):
    _, src = pretrained
    argv = ["--arch", "resnet20s", "--exp-mode", "prune", "--layer-type", "unstructured", "--k", "0.25",
            "--source-net", str(src), "--evaluate", "--result-dir", str(tmp_path), "--exp-name", "w",
            *TINY]  # fmt: skip
    with pytest.warns(UserWarning, match="1/sqrt"):
        _run(argv)


def test_omp_is_one_shot_global_magnitude_and_imp_prunes_in_rounds(pretrained, tmp_path):
    import numpy as np

    from bip_torch import layers as L
    from bip_torch.models import build
    from shared.results.records import iter_records

    _, src = pretrained
    common = ["--configs", "configs/CIFAR10/finetune.yml", "--source-net", str(src), "--epochs", "1",
              "--result-dir", str(tmp_path), "--records", str(tmp_path / "rec"), *TINY]  # fmt: skip
    omp = _run([*common, "--baseline", "omp", "--k", "0.5", "--exp-name", "omp"])
    ck = _checkpoint(omp["run_dir"])
    source = torch.load(src, weights_only=True)["state_dict"]
    m = build("resnet20s", "unstructured", 10, 0.5)
    m.load_state_dict(ck["state_dict"])
    names = [n for n, _ in L.masked_modules(m)]
    flat = np.concatenate([source[f"{n}.weight"].abs().numpy().ravel() for n in names])
    threshold = np.sort(flat)[int(0.5 * flat.size)]  # independent global top-k of the dense weights
    masks = L.hard_masks(m)
    for n in names:
        assert torch.equal(masks[n].bool(), source[f"{n}.weight"].abs() >= threshold), n
    imp = _run([*common, "--baseline", "imp", "--k", "0.64", "--exp-name", "imp"])
    recs = sorted((r for _, r in iter_records([tmp_path / "rec"]) if r["variant"]["method"] == "imp"),
                  key=lambda r: r["metrics"]["imp_round"])  # fmt: skip
    assert [r["variant"]["k"] for r in recs] == [0.8, 0.64]
    assert recs[1]["metrics"]["cumulative_seconds"] >= recs[0]["metrics"]["round_seconds"]
    ck = _checkpoint(imp["run_dir"])
    m = build("resnet20s", "unstructured", 10, 0.64)
    m.load_state_dict(ck["state_dict"])
    rep = L.sparsity_report(m)
    assert rep["kept"] == rep["total"] - int(0.36 * rep["total"])


def test_truncated_lmdb_is_refused(tmp_path, capsys):
    from shared.data.lmdb_store import write_lmdb

    for split in ("train", "val"):
        write_lmdb([(b"\xff\xd8not-a-real-jpeg" * 50, i % 2) for i in range(40)], tmp_path / f"{split}.lmdb")
    data = (tmp_path / "train.lmdb").read_bytes()
    (tmp_path / "train.lmdb").write_bytes(data[: len(data) // 3])
    argv = ["--configs", "configs/ImageNet/pretrain.yml", "--data-dir", str(tmp_path), "--epochs", "1",
            "--result-dir", str(tmp_path / "out"), "--num-workers", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train.lmdb" in err and "Traceback" not in err
