"""Packing: the packed network computes what the masked model computes, and costs the MACs of the
structure it promises (counted here from the masks), which is smaller than the dense model; the
pack_model command writes TorchScript, ONNX and torch.export files that load in their runtimes and
match the masked model."""

import copy
import itertools
import json
import zipfile

import pytest
import torch

from dsp_torch.dsp_module import attach_prune_buffers, prunable_convs
from dsp_torch.flops import reductions
from dsp_torch.models import cifar_resnet, imagenet_resnet
from dsp_torch.pack import PackOptions, pack, packed_macs, plan_model, to_torchscript
from dsp_torch.pack_branches import pack_branches
from dsp_torch.pack_grouped import OPTIONS, GroupedOptions, pack_grouped
from dsp_torch.pack_model import main as pack_main

pytestmark = pytest.mark.torch


def _randomly_pruned(model, seed=0, keep=0.4, n_groups=4):
    """Group-structured random masks plus some dead filters, BN statistics made non-trivial."""
    g = torch.Generator().manual_seed(seed)
    layers = attach_prune_buffers(model, n_groups)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        for conv in layers:
            n, c = conv.out_channels, conv.in_channels
            group = torch.randint(0, n_groups, (n,), generator=g)
            channel_keep = torch.rand(n_groups, c, generator=g) < keep
            mask = channel_keep[group].float()
            mask[torch.rand(n, generator=g) < 0.15] = 0  # dead filters
            conv.mask.copy_(mask[:, :, None, None])
            conv.group.copy_(torch.nn.functional.one_hot(group, n_groups).t().float())
            conv.weight.mul_(conv.mask)
    return model.eval()


DENSE_RESNET20 = 40_813_184  # MACs of the option-B ResNet-20 (convs + FC)
UNION = PackOptions(align=1, gather_below=1.0, full_above=1.0)  # exact widths, always gather / scatter


def _union_structure_macs(model) -> tuple[int, int]:
    """(MACs, hidden filters kept) of the structure pack() promises, counted from the masks and BN here:
    per block, H = conv_a filters that are alive (a kept kernel or a non-zero folded BN bias) and read
    by conv_b; U = input channels the kept kernels of H read; Q = conv_b filters alive on H. The block
    costs |U| |H| 9 HW + |H| |Q| 9 HW; the stem, the projection shortcuts and the FC are dense."""
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, out: sizes.__setitem__(mod, out.shape[2] * out.shape[3]))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()

    def kept(conv):  # (out, in) kernels kept
        w = conv.weight * conv.mask if hasattr(conv, "mask") else conv.weight
        return w.abs().sum(dim=(2, 3)) > 0

    def folded_bias(bn):
        return bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)

    stem = model.conv_1_3x3
    macs = stem.weight.numel() * sizes[stem] + model.classifier.weight.numel()
    hidden_total = 0
    for stage in (model.stage_1, model.stage_2, model.stage_3):
        for block in stage:
            a, b = kept(block.conv_a), kept(block.conv_b)
            live_a = a.any(dim=1) | (folded_bias(block.bn_a) != 0)
            hidden = live_a & b.any(dim=0)
            q = b[:, hidden].any(dim=1) | (folded_bias(block.bn_b) != 0)
            u = a[hidden].any(dim=0)
            if block.downsample is not None:
                macs += block.downsample[0].weight.numel() * sizes[block.downsample[0]]
            if q.any():
                n_u, n_h, n_q = int(u.sum()), int(hidden.sum()), int(q.sum())
                macs += 9 * (n_u * n_h * sizes[block.conv_a] + n_h * n_q * sizes[block.conv_b])
            hidden_total += int(hidden.sum())
    return macs, hidden_total


def _group_structure_macs(model, kind: str) -> int:
    """MACs that the group-aware packing `kind` promises, counted from the masks here. Per block the
    filters F (conv_a: H, conv_b: Q, as in _union_structure_macs) are split by their group (argmax of
    `group`); group g reads R_g = the live inputs (conv_a: all, conv_b: H) its kept kernels touch; a
    part that reads nothing still reads one (zero) column. Per conv, x 9 HW:
      union:   |U R_g| |F|
      grouped: (groups) x max |R_g| x max |F_g|   (one grouped conv, groups padded to the largest)
      mergeK:  min over assignments of the groups to K convs of sum |U R| |F| over the convs."""
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, out: sizes.__setitem__(mod, out.shape[2] * out.shape[3]))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()

    def kept(conv):
        return (conv.weight * conv.mask).abs().sum(dim=(2, 3)) > 0

    def folded_bias(bn):
        return bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)

    def conv_cost(k, conv, filters, live):
        assign = conv.group.argmax(dim=0)
        groups = [filters & (assign == g) for g in range(conv.group.shape[0])]
        groups = [g for g in groups if g.any()]
        reads = [k[g][:, live].any(dim=0) for g in groups]
        sizes_f = [int(g.sum()) for g in groups]

        def union(sel):
            return max(1, int(torch.stack([reads[i] for i in sel]).any(dim=0).sum())) * sum(sizes_f[i] for i in sel)

        if kind == "union" or len(groups) == 1:
            return union(range(len(groups)))
        if kind == "grouped":
            return len(groups) * max(1, max(int(r.sum()) for r in reads)) * max(sizes_f)
        n = int(kind.removeprefix("merge"))
        best = None
        for labels in itertools.product(range(n), repeat=len(groups)):
            cost = sum(union([i for i, lab in enumerate(labels) if lab == j]) for j in set(labels))
            best = cost if best is None else min(best, cost)
        return best

    stem = model.conv_1_3x3
    macs = stem.weight.numel() * sizes[stem] + model.classifier.weight.numel()
    for stage in (model.stage_1, model.stage_2, model.stage_3):
        for block in stage:
            a, b = kept(block.conv_a), kept(block.conv_b)
            hidden = (a.any(dim=1) | (folded_bias(block.bn_a) != 0)) & b.any(dim=0)
            q = b[:, hidden].any(dim=1) | (folded_bias(block.bn_b) != 0)
            if block.downsample is not None:
                macs += block.downsample[0].weight.numel() * sizes[block.downsample[0]]
            if q.any():
                all_in = torch.ones(a.shape[1], dtype=torch.bool)
                macs += 9 * conv_cost(a, block.conv_a, hidden, all_in) * sizes[block.conv_a]
                macs += 9 * conv_cost(b, block.conv_b, q, hidden) * sizes[block.conv_b]
    return macs


@pytest.fixture(scope="module")
def pruned20():
    return _randomly_pruned(cifar_resnet(20))


@pytest.mark.parametrize("kind", OPTIONS)
def test_group_packings_equal_masked_and_cost_their_structure(pruned20, kind):
    net, chosen = pack_grouped(pruned20, GroupedOptions(packing=kind))
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert (net(x) - pruned20(x)).abs().max().item() < 1e-4
    assert all(k == [kind, kind] for k in chosen)
    assert packed_macs(net) == _group_structure_macs(pruned20, kind)
    if kind == "union":
        assert packed_macs(net) == _union_structure_macs(pruned20)[0]


def test_aligned_group_packing(pruned20):
    """align=8: every part's filter count rounded up with zero filters; still the masked model, and
    dearer than the exact widths but cheaper than dense."""
    net, _ = pack_grouped(pruned20, GroupedOptions(packing="merge2", align=8))
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert (net(x) - pruned20(x)).abs().max().item() < 1e-4
    part_convs = [m.conv for m in net.modules() if m.__class__.__name__ == "Part"]
    assert part_convs and all(c.out_channels % 8 == 0 for c in part_convs)
    assert _group_structure_macs(pruned20, "merge2") < packed_macs(net) < DENSE_RESNET20


def test_auto_packing_picks_per_conv(pruned20):
    """auto by MACs: per conv the cheapest kind, so no fixed kind costs less; auto by time (one image,
    two candidates; whatever it picks) still computes the masked model."""
    by_macs, chosen = pack_grouped(pruned20, GroupedOptions(packing="auto", choose_by="macs"))
    fixed = {k: _group_structure_macs(pruned20, k) for k in OPTIONS}
    assert packed_macs(by_macs) <= min(fixed.values())
    assert len({k for ks in chosen for k in ks}) > 1  # the choice differs between convs here
    timed, _ = pack_grouped(pruned20, GroupedOptions(packing="auto", batch=1, candidates=("union", "merge2")))
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert (timed(x) - pruned20(x)).abs().max().item() < 1e-4
        # scripted: the mixed kinds (one part / several parts, gather / none) all compile
        assert (to_torchscript(by_macs)(x) - pruned20(x)).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    "options",
    [PackOptions(), PackOptions(align=8, channels_last=False), PackOptions(align=1, gather_below=1.0, full_above=1.0)],
)
def test_cifar_pack_equals_masked(options):
    model = _randomly_pruned(cifar_resnet(20))
    net = pack(model, options)
    x = torch.randn(8, 3, 32, 32)
    with torch.inference_mode():
        assert (net(x) - model(x)).abs().max().item() < 1e-4
        assert (to_torchscript(net)(x) - model(x)).abs().max().item() < 1e-4
    ours, _ = _union_structure_macs(model)
    assert ours < 0.9 * DENSE_RESNET20  # 15 % dead filters, 13 % of the channels unread
    if options == UNION:
        assert packed_macs(net) == ours
    else:  # aligned widths and plain adds cost more than the exact structure, but it stays smaller
        assert ours <= packed_macs(net) < DENSE_RESNET20


def test_branches_packing_equals_masked():
    """The authors' form (one branch per group): same outputs, fewer MACs than ours at exact widths."""
    model = _randomly_pruned(cifar_resnet(20))
    net = pack_branches(model)
    x = torch.randn(8, 3, 32, 32)
    with torch.inference_mode():
        assert (net(x) - model(x)).abs().max().item() < 1e-4
        assert (to_torchscript(net)(x) - model(x)).abs().max().item() < 1e-4
    assert packed_macs(net) < packed_macs(pack(model, UNION))  # group channels kept per group


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_pack_equals_masked(arch):
    model = _randomly_pruned(imagenet_resnet(arch, num_classes=10), seed=1, n_groups=2)
    net = pack(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert (net(x) - model(x)).abs().max().item() < 1e-4


def test_dead_block_and_constant_channels():
    model = _randomly_pruned(cifar_resnet(20))
    block = model.stage_2[1]
    with torch.no_grad():
        block.conv_a.mask.zero_()
        block.conv_a.weight.zero_()
        block.bn_a.weight.zero_()
        block.bn_a.bias.zero_()  # conv_a is dead: the branch only adds conv_b's (folded BN) bias
        model.stage_1[2].conv_b.mask.zero_()
        model.stage_1[2].conv_b.weight.zero_()
        model.stage_1[2].bn_b.weight.zero_()
        model.stage_1[2].bn_b.bias.zero_()  # this branch writes nothing: out = relu(x)
        model.stage_3[2].bn_a.weight[3] = 0.0
        model.stage_3[2].bn_a.bias[3] = 0.7  # a filter with gamma = 0 but a constant output: kept
    plans = plan_model(model)
    assert plans[4].hidden[0] == [] and plans[4].out_index and 3 in plans[8].hidden[0]
    assert plans[2].out_index == []
    net = pack(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert (net(x) - model(x)).abs().max().item() < 1e-4


def _save_pruned(model, tmp_path):
    from dsp_torch.checkpoints import save_checkpoint

    ckpt = tmp_path / "resnet20_P0g4c0.50.pkl"
    save_checkpoint(
        ckpt,
        stage="pruned",
        model=model,
        arch={"family": "cifar", "depth": 20, "num_classes": 10},
        groups=4,
        best_acc=50.0,
    )
    return ckpt


def test_pack_model_command_roundtrip(tmp_path, capsys, pruned20):
    model = pruned20
    ckpt = _save_pruned(model, tmp_path)
    out = tmp_path / "packed.pt"
    assert pack_main(["--ckpt", str(ckpt), "--save", str(out), "-l", "20"]) == 0
    assert "max |packed - masked|" in capsys.readouterr().out
    with zipfile.ZipFile(out) as z:
        meta = json.loads(z.read(next(n for n in z.namelist() if n.endswith("dsp_torch_packed.json"))))
    assert meta["arch"]["depth"] == 20 and meta["max_abs_diff_vs_masked"] < 1e-4
    loaded = torch.jit.load(str(out))
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert (loaded(x) - model(x)).abs().max().item() < 1e-4
    assert pack_main(["--ckpt", str(ckpt), "--save", str(out)]) == 2  # never overwrites silently
    assert "exists" in capsys.readouterr().err
    assert pack_main(["--ckpt", str(ckpt), "--save", str(tmp_path / "x.pt"), "-l", "56"]) == 2


def test_pack_model_writes_onnx_and_torch_export(tmp_path, capsys, pruned20):
    """--onnx / --exported: each file loads in its own runtime (onnxruntime; torch.export.load) and
    gives the masked model's outputs at a batch size other than the export example's. Two of the
    three blocks of each stage are pruned away (their branch writes nothing): a small graph to
    export, and the dead-block case in every format."""
    ort = pytest.importorskip("onnxruntime")
    model = copy.deepcopy(pruned20)
    with torch.no_grad():
        for stage in (model.stage_1, model.stage_2, model.stage_3):
            for block in stage[1:]:
                for t in (block.conv_b.mask, block.conv_b.weight, block.bn_b.weight, block.bn_b.bias):
                    t.zero_()
    ckpt = _save_pruned(model, tmp_path)
    paths = {k: tmp_path / f"p.{k}" for k in ("pt", "onnx", "pt2")}
    argv = ["--ckpt", str(ckpt), "--save", str(paths["pt"]), "--packing", "grouped"]
    assert pack_main(argv + ["--onnx", str(paths["onnx"]), "--exported", str(paths["pt2"])]) == 0
    printed = capsys.readouterr().out
    assert "max |ONNX in onnxruntime - masked|" in printed and "max |torch.export - masked|" in printed
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        want = model(x).numpy()
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    got_onnx = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(got_onnx - want).max() < 1e-4
    with torch.inference_mode():
        got_pt2 = torch.export.load(str(paths["pt2"])).module()(x).numpy()
    assert abs(got_pt2 - want).max() < 1e-4
    with zipfile.ZipFile(paths["pt"]) as z:
        meta = json.loads(z.read(next(n for n in z.namelist() if n.endswith("dsp_torch_packed.json"))))
    assert meta["packing"] == "grouped" and meta["onnx_max_abs_diff_vs_masked"] < 1e-4
    assert meta["exported_max_abs_diff_vs_masked"] < 1e-4
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left
    # an existing export file is never overwritten silently, and nothing is written then
    paths["pt"].unlink()
    assert pack_main(argv + ["--onnx", str(paths["onnx"])]) == 2
    assert "exists" in capsys.readouterr().err and not paths["pt"].exists()


@pytest.mark.realdata
def test_released_model_packs_smaller_and_equal(checkpoint_root, cifar_dir):
    from dsp_torch.released import convert_released
    from shared.data import CIFAR_MEAN, CIFAR_STD, load_cifar

    path = checkpoint_root / "dsp" / "resnet56_g4.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    conv = convert_released(path)
    net = pack(conv.model)
    test = load_cifar(cifar_dir, "cifar10", "test")
    x = torch.from_numpy(test.images[:64]).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        assert (to_torchscript(net)(x) - conv.script(x)).abs().max().item() < 1e-4
    dense = 125_747_840
    # DSP's kernel count (the authors' branches execute it) is 0.35 x dense; our one-conv-per-layer
    # structure reads the union of the groups' channels: 0.49 x dense at exact widths
    ours, hidden = _union_structure_macs(conv.model)
    assert packed_macs(pack(conv.model, UNION)) == ours and ours < 0.5 * dense
    assert packed_macs(net) < 0.77 * dense  # widths aligned to 8, gathers and scatters only where they pay
    # the authors' branches execute exactly the kernel count (the whole-network MACs of dsp_torch.flops)
    branches = pack_branches(conv.model)
    with torch.inference_mode():
        assert (branches(x) - conv.script(x)).abs().max().item() < 1e-4
    assert packed_macs(branches) == reductions(conv.model, conv.arch)["whole_macs"] < 0.36 * dense
    # a group-aware packing: exact, and its MACs as counted independently from the masks (whole network;
    # dense 125.75M, ideal 44.33M; union 61.91M, grouped 59.46M, merge2 51.79M, merge3 47.10M)
    merged, _ = pack_grouped(conv.model, GroupedOptions(packing="merge3"))
    with torch.inference_mode():
        assert (merged(x) - conv.script(x)).abs().max().item() < 1e-4
    assert packed_macs(merged) == 47_103_104
    plans = plan_model(conv.model)
    assert sum(len(h) for p in plans for h in p.hidden) == hidden < 0.7 * (9 * (16 + 32 + 64))  # 0.695: dead dropped
    assert len(prunable_convs(conv.model)) == 54
