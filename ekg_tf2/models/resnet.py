"""EKG's ResNets (the original's `nets/ResNet.py`): CIFAR ResNet-20/56 and ImageNet ResNet-18/34/50.

Layer names are the original's, so the released pickle maps onto them: `conv`/`bn` (stem),
`BasicBlock{stage}.{block}/conv1|bn1|conv2|bn2|conv3|bn3`, `Bottleneck{stage}.{block}/conv0..conv3`,
`fc`. Shortcuts are 1x1 conv + BN projections (option B) wherever the stride or the width changes,
including the CIFAR stage transitions, as the released weights require (research/ekg.md 2, 5.2).
ImageNet nets: 7x7 stride-2 stem and 3x3 stride-2 max-pool; the bottleneck stride sits on the 3x3.

Channel groups (research/ekg.md 1.2): the stem conv, or a stage's projection conv3, opens a *group*
whose width every block output of that stage shares; each inner conv (conv1 of a basic block, conv0
and conv1 of a bottleneck) is its own group. A group is named after the conv that opens it; its gate
is applied after the stem's ReLU, after each inner BN + ReLU and after each block's relu(x + shortcut).

`widths` (group name -> channels) builds a slimmed network; `from_shapes` reads them off a params dict.
"""

from __future__ import annotations

from collections import OrderedDict

import tensorflow as tf

from ekg_tf2.models.tcl import FC, BatchNorm, Conv2d, ScoringGate

CIFAR_DEPTHS = {8: 1, 20: 3, 56: 9}  # ResNet-8: a small net for tests only (not an --arch choice)
IMAGENET_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


class ResNet(tf.Module):
    """A ResNet as an ordered dict of layers (`self.layers`) plus a plan of who writes through which
    gate. Gates exist only after `attach_gates()` (the search); before, and for slimmed networks, the
    model is a plain ResNet."""

    def __init__(self, arch: str, num_classes: int, widths: dict[str, int] | None = None, seed: int = 0):
        super().__init__(name="ResNet")
        self.arch, self.num_classes = arch, int(num_classes)
        self.imagenet = arch in ("ResNet-18", "ResNet-34", "ResNet-50")
        depth = int(arch.split("-")[1])
        self.layers: OrderedDict[str, object] = OrderedDict()
        self.in_group: dict[str, str] = {}  # conv/fc label -> group of its input channels
        self.out_group: dict[str, str] = {}  # conv/bn label -> group of its output channels
        self.blocks: list[dict] = []
        self.gates: OrderedDict[str, ScoringGate] = OrderedDict()
        self.sites: list[tuple[str, str]] = []  # (site name, group) in forward order
        self.widths: dict[str, int] = {}
        w = dict(widths or {})

        def width(group: str, full: int) -> int:
            self.widths.setdefault(group, int(w.get(group, full)))
            return self.widths[group]

        def conv(label, group_in, group_out, c_full, k, stride):
            c_in, c_out = self.widths[group_in] if group_in else 3, width(group_out, c_full)
            self.layers[label] = Conv2d(label, c_in, c_out, k, stride, seed)
            self.in_group[label], self.out_group[label] = group_in, group_out

        def bn(label, group, gamma=1.0):
            self.layers[label] = BatchNorm(label, self.widths[group], gamma)
            self.out_group[label] = group

        if self.imagenet:
            kind, counts = IMAGENET_BLOCKS[depth]
            stage_widths, stem_k, stem_s, stem_c = (64, 128, 256, 512), 7, 2, 64
        else:
            kind, counts = "basic", (CIFAR_DEPTHS[depth],) * 3
            stage_widths, stem_k, stem_s, stem_c = (16, 32, 64), 3, 1, 16
        expansion = 4 if kind == "bottleneck" else 1
        conv("conv", None, "conv", stem_c, stem_k, stem_s)
        bn("bn", "conv")
        self.sites.append(("conv", "conv"))
        group, c_prev = "conv", stem_c
        for s, (n_blocks, planes) in enumerate(zip(counts, stage_widths)):
            c_out = planes * expansion
            for b in range(n_blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                p = f"{'BasicBlock' if kind == 'basic' else 'Bottleneck'}{s}.{b}"
                projection = stride != 1 or c_prev != c_out
                block_in = group
                if projection:
                    group = f"{p}/conv3"  # this stage's residual width opens here
                    width(group, c_out)
                inner = []
                if kind == "basic":
                    conv(f"{p}/conv1", block_in, f"{p}/conv1", planes, 3, stride)
                    bn(f"{p}/bn1", f"{p}/conv1")
                    inner.append(("conv1", "bn1", f"{p}/conv1"))
                    conv(f"{p}/conv2", f"{p}/conv1", group, c_out, 3, 1)
                    bn(f"{p}/bn2", group, 0.0)
                    last = ("conv2", "bn2")
                else:
                    conv(f"{p}/conv0", block_in, f"{p}/conv0", planes, 1, 1)
                    bn(f"{p}/bn0", f"{p}/conv0")
                    conv(f"{p}/conv1", f"{p}/conv0", f"{p}/conv1", planes, 3, stride)
                    bn(f"{p}/bn1", f"{p}/conv1")
                    inner += [("conv0", "bn0", f"{p}/conv0"), ("conv1", "bn1", f"{p}/conv1")]
                    conv(f"{p}/conv2", f"{p}/conv1", group, c_out, 1, 1)
                    bn(f"{p}/bn2", group, 0.0)
                    last = ("conv2", "bn2")
                if projection:
                    conv(f"{p}/conv3", block_in, group, c_out, 1, stride)
                    bn(f"{p}/bn3", group)
                for _, _, g in inner:
                    self.sites.append((g, g))
                self.sites.append((f"{p}/out", group))
                self.blocks.append({"name": p, "inner": inner, "last": last, "projection": projection, "group": group})
                c_prev = c_out
        self.layers["fc"] = FC("fc", self.widths[group], self.num_classes, seed)
        self.in_group["fc"] = group
        self.last_group = group
        self.input_size = 224 if self.imagenet else 32
        self(tf.zeros([1, self.input_size, self.input_size, 3]), training=False)  # records map sizes

    # ---- the pseudo-supernet -----------------------------------------------------------------------

    def attach_gates(self) -> None:
        """Create one ScoringGate per group and wire it into the convs, BNs and the FC."""
        if self.gates:
            return
        for group, c in self.widths.items():
            self.gates[group] = ScoringGate(group, c)
        for label, layer in self.layers.items():
            if isinstance(layer, Conv2d):
                gin = self.in_group[label]
                layer.in_gate = self.gates[gin] if gin else None
                layer.out_gate = self.gates[self.out_group[label]]
                layer.out_gate.num_call += 1
            elif isinstance(layer, BatchNorm):
                layer.gate = self.gates[self.out_group[label]]
            elif isinstance(layer, FC):
                layer.in_gate = self.gates[self.in_group[label]]

    def _gate(self, site: str, group: str, x: tf.Tensor, probes: dict | None) -> tf.Tensor:
        if not self.gates:
            return x
        return self.gates[group](x, None if probes is None else probes.get(site))

    # ---- forward -----------------------------------------------------------------------------------

    def __call__(self, x: tf.Tensor, training: bool = False, probes: dict | None = None, update: bool = True):
        L = self.layers
        x = tf.nn.relu(L["bn"](L["conv"](x), training, update))
        x = self._gate("conv", "conv", x, probes)
        if self.imagenet:
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for blk in self.blocks:
            p = blk["name"]
            h = x
            for c, b, g in blk["inner"]:
                h = tf.nn.relu(L[f"{p}/{b}"](L[f"{p}/{c}"](h), training, update))
                h = self._gate(g, g, h, probes)
            c, b = blk["last"]
            h = L[f"{p}/{b}"](L[f"{p}/{c}"](h), training, update)
            shortcut = L[f"{p}/bn3"](L[f"{p}/conv3"](x), training, update) if blk["projection"] else x
            x = tf.nn.relu(h + shortcut)
            x = self._gate(f"{p}/out", blk["group"], x, probes)
        x = tf.reduce_mean(x, [1, 2])
        return L["fc"](x)

    # ---- bookkeeping -------------------------------------------------------------------------------

    def specs(self, kept: dict[str, int] | None = None) -> list:
        """`shared.flops` specs of every conv, BN and the FC, from the live channels (the gates' kept
        counts, overridden by `kept` {group: channels} to measure a candidate without applying it)."""
        return [layer.spec(kept) for layer in self.layers.values()]

    def param_items(self):
        """(original variable name, tf.Variable) in the released pickle's naming, e.g. `conv/kernel:0`."""
        for label, layer in self.layers.items():
            names = ("kernel", "biases") if isinstance(layer, FC) else None
            if isinstance(layer, Conv2d):
                names = ("kernel",)
            elif isinstance(layer, BatchNorm):
                names = ("gamma", "beta", "moving_mean", "moving_variance")
            for n in names:
                yield f"{label}/{n}:0", getattr(layer, n)

    def weight_variables(self) -> list[tf.Variable]:
        """The trainable variables (conv/FC kernels, FC biases, BN gamma/beta), in layer order."""
        return [v for _, v in self.param_items() if v.trainable]


def build(arch: str, num_classes: int, widths: dict[str, int] | None = None, seed: int = 0) -> ResNet:
    return ResNet(arch, num_classes, widths, seed)


def widths_from_shapes(shapes: dict[str, tuple]) -> dict[str, int]:
    """Group widths of a (possibly slimmed) params dict: each group's width is the output channels of
    the conv that opens it (`conv`, `.../conv1`, `.../conv3`, ...)."""
    out = {}
    for name, shape in shapes.items():
        if name.endswith("/kernel:0") and len(shape) == 4 and not name.endswith("conv2/kernel:0"):
            out[name[: -len("/kernel:0")]] = int(shape[-1])
    return out


def param_shapes(model: ResNet) -> dict[str, tuple]:
    return {k: tuple(int(s) for s in v.shape) for k, v in model.param_items()}


def count_gates(model: ResNet) -> int:
    return len(model.widths)
