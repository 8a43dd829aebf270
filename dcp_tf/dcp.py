"""DCP, Discrimination-aware Channel Pruning (Zhuang et al., NeurIPS 2018), in two named variants.

`pocketflow` (PocketFlow's `DisChnPrunedLearner`, the default; research/dcp.md section 2):
- a frozen copy of the pre-trained model (`full`) and the copy being pruned (`pruned`), both fed the
  same batch, both with training-mode BN (only the pruned copy's moving statistics move);
- the L convs, in graph-creation order, cut into P+1 blocks of n = ceil((L+1)/(P+1)); an aux head
  (Eq. 4-5: BN, ReLU, global average pool, FC, softmax CE) on the raw output of conv i when
  (i+1) % n == 0; the last block's discrimination loss is the network's loss (CE + weight decay);
- reconstruction loss of conv i (Eq. 3, unnormalised as PocketFlow writes it): l2_loss(full_i - pruned_i)
  = sum of squares / 2 over the batch, on pre-BN conv outputs, target = the pre-trained model;
- per block: Adam(dcp_lrn_rate_adam) fine-tuning of every pruned-copy variable and the block's head on
  (aux loss of the block + final loss), dcp_nb_iters_block steps; then for every conv of the block but
  the network's first: greedy addition (Algorithm 2) of the input channel with the largest squared
  gradient norm ||dL/dW_{:,:,j,:}||^2 of (reconstruction + discrimination loss, Eq. 6, lambda 1) from ONE
  mini-batch, never re-picking a chosen channel (PocketFlow's endless-loop bug, PR #147) and stopping
  with a clear error on non-finite norms; after each addition dcp_nb_iters_layer Adam steps on that
  kernel alone (its Adam state kept across additions); the first pick is scored at the dense kernel,
  then the mask is zeroed and only chosen slices stay; channels added later start from zero;
- final fine-tuning: the model's momentum SGD schedule on CE + weight decay (+ distillation with
  --enbl_dst: 4 x CE(softmax(teacher/4), student/4), no T^2, final stage only);
- iteration counts divided by the number of replicas, as PocketFlow divides them by its workers.

`paper` (the authors' 2018 code, which made the NeurIPS tables; research/dcp.md 3.2):
- aux heads on residual-block outputs at pivots k (nblocks // (P+1) + 1), k = 1..P (PreResNet-56 with
  P = 3: after blocks 7, 14, 21); only block-internal convs are pruned (basic: conv2), so the residual
  width is untouched and the producing conv and its BN lose the same channels (exact slimming);
- reconstruction: MSE (mean, Eq. 3's 1/2Q up to the constant) + lambda 1 x CE;
- stage fine-tuning: SGD-Nesterov (lr 0.1, x0.1 at 40 % / 60 % of the stage, momentum 0.9, wd 1e-4),
  alternating one step on the stage's aux loss (segments 0..p and its head) and one on the final loss;
  after stage 0 the reference model becomes the fine-tuned model;
- selection: BN frozen (inference mode), channel score sum_out ||G_{o,j}||_F of the gradient accumulated
  over the selection set (the whole training set on CIFAR, 10k images on ImageNet); the added channel
  gets its fine-tuned weights back (warm start); the sub-problem is one pass of SGD-Nesterov (lr 0.01,
  wd 1e-4, gradient-norm clip 10) over the selection set on the masked kernel;
- final fine-tuning: SGD-Nesterov, lr 0.1, x0.1 at 160 and 240 of 400 epochs, wd 1e-4.

Both keep c - floor(eta c) input channels per pruned conv and mask every optimiser's gradients.

Resume (PocketFlow cannot, issue #60): `dcp_save_path`'s folder holds a tf.train.Checkpoint of both
models, masks, aux heads, every optimiser's slots, the warm-start kernels and a progress file (phase,
stage, layer, channels chosen so far, data-stream position), saved after block fine-tuning, after every
`save_every_picks` channel additions, at the end of every layer and every `save_step` final steps. A run
killed mid-selection resumes to the same channel choices.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from dcp_tf import checkpoints, data
from dcp_tf.models import AuxHead, ResNet
from dcp_tf.optim import Adam, Momentum
from shared import archs, tf_train
from shared.errors import UserError, check_range

VARIANTS = ("pocketflow", "paper")
# The step bodies have no tensor-dependent Python control flow: autograph need not convert them (and
# under MirroredStrategy its conversion of the bound methods they call failed).
_no_autograph = tf.autograph.experimental.do_not_convert


class SelectionError(UserError):
    """Channel selection cannot go on (non-finite gradient norms: the loss diverged)."""


@dataclass
class Stage:
    index: int
    layers: list[int]  # conv indices pruned in this stage
    tap: tuple[str, int] | None  # ("conv", i) / ("block", j): where the stage's aux head reads; None: final loss
    stop_block: int | None  # the forward can stop after this residual block (None: full network)


def pocketflow_stages(model: ResNet, nb_stages: int) -> list[Stage]:
    """PocketFlow's split of the L convs into P+1 blocks of ceil((L+1)/(P+1)) convs."""
    n_convs = len(model.convs)
    per = math.ceil((n_convs + 1) / (nb_stages + 1))
    allowed = [p for p in range(1, n_convs) if n_convs // math.ceil((n_convs + 1) / (p + 1)) == p]
    if nb_stages < 1 or n_convs // per != nb_stages:
        raise UserError(
            f"--dcp_nb_stages {nb_stages} does not fit this network's {n_convs} convs (PocketFlow places an aux "
            f"head after every ceil((L+1)/(P+1))-th conv); allowed values: {allowed}"
        )
    stages = []
    for b in range(nb_stages + 1):
        layers = [i for i in range(b * per, min((b + 1) * per, n_convs)) if i >= 1]
        if b < nb_stages:
            tap = (b + 1) * per - 1
            stages.append(Stage(b, layers, ("conv", tap), model.conv_block[tap]))
        else:
            stages.append(Stage(b, layers, None, None))
    return stages


def paper_pivots(n_blocks: int, nb_stages: int) -> list[int]:
    """The authors' v1 pivots: multiples of nblocks // (P+1) + 1 (PreResNet-56, P=3: 7, 14, 21)."""
    per = n_blocks // (nb_stages + 1) + 1
    pivots = [k * per for k in range(1, nb_stages + 1)]
    if nb_stages < 1 or pivots[-1] >= n_blocks:
        allowed = [p for p in range(1, n_blocks) if p * (n_blocks // (p + 1) + 1) < n_blocks]
        raise UserError(
            f"--dcp_nb_stages {nb_stages} does not fit this network's {n_blocks} residual blocks "
            f"(pivots {pivots}); allowed values: {allowed}"
        )
    return pivots


def paper_stages(model: ResNet, nb_stages: int) -> list[Stage]:
    pivots = paper_pivots(len(model.blocks), nb_stages)
    bounds = [0, *pivots, len(model.blocks)]
    stages = []
    for p in range(nb_stages + 1):
        layers = [c.index for blk in model.blocks[bounds[p] : bounds[p + 1]] for c in blk.main[1:]]
        tap = ("block", bounds[p + 1] - 1) if p < nb_stages else None
        stages.append(Stage(p, layers, tap, bounds[p + 1] - 1 if p < nb_stages else None))
    return stages


def make_stages(model: ResNet, variant: str, nb_stages: int) -> list[Stage]:
    return pocketflow_stages(model, nb_stages) if variant == "pocketflow" else paper_stages(model, nb_stages)


@dataclass
class DcpConfig:
    """Settings of a dis-chn-pruned run (defaults: PocketFlow's flags; paper_* for the paper variant)."""

    variant: str = "pocketflow"
    prune_ratio: float = 0.5
    nb_stages: int = 3
    lrn_rate_adam: float = 1e-3
    nb_iters_block: int = 10000
    nb_iters_layer: int = 500
    batch_size: int = 128  # per replica, as PocketFlow's per-GPU batch
    # final fine-tuning (PocketFlow: the ModelHelper's schedule)
    lrn_rate_init: float = 0.1
    batch_size_norm: int = 128
    momentum: float = 0.9
    loss_w_dcy: float = 2e-4
    nb_epochs: float = 250.0
    lr_epochs: tuple[float, ...] = (100.0, 150.0, 200.0)
    nb_epochs_rat: float = 1.0
    enbl_dst: bool = False
    loss_w_dst: float = 4.0
    tempr_dst: float = 4.0
    # the paper variant (authors' v1 code)
    paper_stage_epochs: float = 100.0
    paper_stage_lr: float = 0.1
    paper_layer_lr: float = 0.01
    paper_weight_decay: float = 1e-4
    paper_select_samples: int = -1  # -1: the whole training set (CIFAR); the authors used 10k on ImageNet
    paper_final_epochs: float = 400.0
    paper_final_lr_epochs: tuple[float, ...] = (160.0, 240.0)
    # machinery
    save_step: int = 10000
    save_every_picks: int = 1
    summ_step: int = 100
    seed: int = 0
    accum_steps: int = 1
    xla: bool = False
    divide_iters_by_workers: bool = True
    bn_decay: float | None = None  # None: the network's; short runs need less for usable moving statistics

    def validate(self, model: ResNet) -> list[Stage]:
        if self.variant not in VARIANTS:
            raise UserError(f"--dcp_variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in ("prune_ratio", "lrn_rate_adam", "lrn_rate_init", "loss_w_dcy", "nb_epochs_rat"):
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"--dcp_{name} must be a finite number, got {getattr(self, name)}")
        check_range("--dcp_prune_ratio", self.prune_ratio, 0.0, 1.0, high_open=True)
        check_range("--dcp_lrn_rate_adam", self.lrn_rate_adam, 0.0, math.inf, low_open=True)
        check_range("--nb_epochs_rat", self.nb_epochs_rat, 0.0, math.inf)
        if self.nb_iters_block < 0 or self.nb_iters_layer < 0:
            raise UserError("--dcp_nb_iters_block and --dcp_nb_iters_layer must be >= 0")
        if self.batch_size < 1 or self.accum_steps < 1 or self.batch_size % self.accum_steps:
            raise UserError(
                f"--batch_size {self.batch_size} must be >= 1 and divisible by --accum_steps {self.accum_steps}"
            )
        return make_stages(model, self.variant, self.nb_stages)


@dataclass
class Progress:
    phase: str = "block"  # block -> select -> (next stage) ... -> final -> done
    stage: int = 0
    layer_pos: int = 0
    chosen: list[int] = field(default_factory=list)
    steps: int = 0  # steps done in the current block / final phase
    position: int = 0  # examples consumed from the training stream
    picks: int = 0  # channel additions so far (all layers)
    kept: dict = field(default_factory=dict)  # conv index -> chosen channels, finished layers
    checkpoint: str | None = None


def kept_count(c: int, eta: float) -> int:
    return archs.dcp_kept(c, eta)


class DcpLearner:
    """One dis-chn-pruned run. `run()` resumes from `run_dir` when a progress file is there."""

    def __init__(
        self,
        cfg: DcpConfig,
        pretrained: ResNet,
        train_split,
        run_dir: str | Path,
        strategy: tf.distribute.Strategy | None = None,
        log: Callable[[str], None] = print,
        on_pick: Callable[[int, int, list[int]], None] | None = None,
        metrics=None,
    ):
        """`metrics`: a shared.tf_train.MetricsWriter (metrics.jsonl + TensorBoard), or None."""
        self.cfg, self.split, self.log, self.on_pick = cfg, train_split, log, on_pick
        self.metrics = metrics
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.workers = self.replicas if cfg.divide_iters_by_workers else 1
        self.global_batch = cfg.batch_size * self.replicas
        self.micro_batch = self.global_batch // cfg.accum_steps
        self.run_dir = Path(run_dir)
        self.bn_training = cfg.variant == "pocketflow"  # the paper freezes BN during selection
        arch = pretrained.arch
        with self.strategy.scope():
            self.full = ResNet(**arch, seed=cfg.seed)
            self.pruned = ResNet(**arch, seed=cfg.seed)
            self.stages = cfg.validate(self.pruned)
            self.full.copy_from(pretrained)
            self.pruned.copy_from(pretrained)
            self.pruned.set_bn_decay(cfg.bn_decay)
            self.heads = [self._make_head(s) for s in self.stages if s.tap is not None]
            self._make_optimizers()
            # which conv the stage's shared score step scores (one-hot over the convs; set before each call)
            self.score_layer = tf.Variable(tf.zeros([len(self.pruned.convs)]), trainable=False, name="score_layer")
        self.progress = Progress()
        self._steps: dict = {}
        vars_ = {
            "full": self.full,
            "pruned": self.pruned,
            "heads": self.heads,
            "opts": self.opts,
            "warm": self.warm,
            "scores": self.scores,
        }
        self.ckpt = tf.train.Checkpoint(**vars_)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.run_dir), max_to_keep=2, checkpoint_name="dcp")

    # ------------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------------

    def _make_head(self, stage: Stage) -> AuxHead:
        kind, i = stage.tap
        channels = self.pruned.convs[i].c_out if kind == "conv" else self.pruned.blocks[i].main[-1].c_out
        return AuxHead(
            f"aux{stage.index}",
            channels,
            self.pruned.num_classes,
            self.cfg.variant,
            seed=(self.cfg.seed, 500 + stage.index),
        )

    def _model_vars_and_masks(self, variables):
        masks = {id(c.kernel): c.mask for c in self.pruned.convs}
        return variables, [masks.get(id(v)) for v in variables]

    def _opt(self, variables, kind: str, name: str, **kw):
        variables, masks = self._model_vars_and_masks(list(variables))
        if kind == "adam":
            return Adam(variables, masks, lr=self.cfg.lrn_rate_adam, name=name)
        return Momentum(variables, masks, name=name, **kw)

    def _make_optimizers(self) -> None:
        cfg, m = self.cfg, self.pruned
        self.prunable = [i for s in self.stages for i in s.layers]
        self.opts: dict[str, object] = {}
        wd = cfg.paper_weight_decay
        for s in self.stages:
            head = self.heads[s.index].trainable if s.tap is not None else []
            if cfg.variant == "pocketflow":
                self.opts[f"block{s.index}"] = self._opt(m.model_variables() + head, "adam", f"block{s.index}")
            else:
                if s.tap is not None:
                    self.opts[f"stage{s.index}_aux"] = self._opt(
                        self._segment_vars(s) + head,
                        "sgd",
                        f"stage{s.index}_aux",
                        lr=cfg.paper_stage_lr,
                        momentum=0.9,
                        nesterov=True,
                        weight_decay=wd,
                    )
                self.opts[f"stage{s.index}_final"] = self._opt(
                    m.model_variables(),
                    "sgd",
                    f"stage{s.index}_final",
                    lr=cfg.paper_stage_lr,
                    momentum=0.9,
                    nesterov=True,
                    weight_decay=wd,
                )
        for i in self.prunable:
            k = [m.convs[i].kernel]
            if cfg.variant == "pocketflow":
                self.opts[f"layer{i}"] = self._opt(k, "adam", f"layer{i}")
            else:
                self.opts[f"layer{i}"] = self._opt(
                    k,
                    "sgd",
                    f"layer{i}",
                    lr=cfg.paper_layer_lr,
                    momentum=0.9,
                    nesterov=True,
                    weight_decay=wd,
                    clip_norm=10.0,
                )
        final = dict(
            lr=cfg.lrn_rate_init,
            momentum=cfg.momentum,
            nesterov=cfg.variant == "paper",
            weight_decay=wd if cfg.variant == "paper" else 0.0,
        )
        self.opts["final"] = self._opt(m.model_variables(), "sgd", "final", **final)
        # the paper's warm start: a copy of each pruned kernel before its selection; scores per layer
        self.warm = {
            str(i): tf.Variable(m.convs[i].kernel.read_value(), trainable=False, name=f"warm{i}")
            for i in (self.prunable if cfg.variant == "paper" else [])
        }
        self.scores = {
            str(i): tf.Variable(tf.zeros([m.convs[i].c_in]), trainable=False, name=f"score{i}") for i in self.prunable
        }

    def _segment_vars(self, stage: Stage) -> list[tf.Variable]:
        """The trainable variables before the stage's pivot (segments 0..p of the authors' code)."""
        m = self.pruned
        out = [m.stem.kernel]
        for blk in m.blocks[: stage.stop_block + 1]:
            for bn in blk.bns:
                out += [bn.gamma, bn.beta]
            out += [c.kernel for c in blk.convs()]
        return out

    # ------------------------------------------------------------------------------------------------
    # losses (replica context). Per-example terms are divided by the global batch by TrainStep.
    # ------------------------------------------------------------------------------------------------

    def _ce(self, logits, labels):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    def _weight_decay(self):
        """PocketFlow's loss_w_dcy x sum of l2_loss over the non-BN variables (part of loss_bsc)."""
        return self.cfg.loss_w_dcy * tf.add_n([tf.nn.l2_loss(v) for v in self.pruned.decay_variables()])

    def _tap(self, stage: Stage, conv_outs, block_outs):
        kind, i = stage.tap
        return conv_outs[i] if kind == "conv" else block_outs[i]

    def _dis_loss(self, stage: Stage, x, labels, training: bool, update: bool):
        """(per-example discrimination loss, regulariser, conv outputs) of a stage on the pruned copy."""
        logits, conv_outs, block_outs = self.pruned.forward(x, training, update, stop_after_block=stage.stop_block)
        if stage.tap is not None:
            head = self.heads[stage.index]
            return self._ce(head(self._tap(stage, conv_outs, block_outs), training, update), labels), 0.0, conv_outs
        reg = self._weight_decay() if self.cfg.variant == "pocketflow" else 0.0
        return self._ce(logits, labels), reg, conv_outs

    def _reference(self, x, layers):
        """The frozen full model's conv outputs, computed up to the last of `layers`."""
        stop = max(self.full.conv_block[i] for i in layers)
        return self.full.forward(x, self.bn_training, update=False, stop_after_block=stop)[1]

    def _reconstruction(self, i: int, x, conv_outs, ref=None):
        """Per-example reconstruction term of conv i (Eq. 3): PocketFlow l2_loss (sum/2, x global batch so
        the mean over the batch gives the batch sum); paper: mean squared error."""
        ref = self._reference(x, [i]) if ref is None else ref
        diff = tf.square(ref[i] - conv_outs[i])
        per_example = tf.reduce_sum(diff, [1, 2, 3])
        if self.cfg.variant == "pocketflow":
            return 0.5 * per_example * float(self.global_batch)
        return per_example / float(np.prod(diff.shape[1:]))

    # ------------------------------------------------------------------------------------------------
    # compiled steps (shared.tf_train.TrainStep: replicas, accumulation, XLA in one place)
    # ------------------------------------------------------------------------------------------------

    def _step(self, key, variables, compute_loss, apply_update, accum=None):
        if key not in self._steps:
            self._steps[key] = tf_train.TrainStep(
                self.strategy,
                variables,
                compute_loss,
                apply_update,
                global_batch_size=self.micro_batch,
                accum_steps=accum or self.cfg.accum_steps,
                jit_compile=self.cfg.xla,
                autograph=False,  # no tensor-dependent Python control flow: traced in about half the time
            )
        return self._steps[key]

    def _block_step(self, stage: Stage):
        """PocketFlow: Adam on (aux loss of the block + final loss); the last block: 2 x loss_bsc."""
        opt = self.opts[f"block{stage.index}"]

        @_no_autograph
        def loss(x, y):
            logits, conv_outs, block_outs = self.pruned.forward(x, True, True)
            final = self._ce(logits, y)
            wd = self._weight_decay()
            if stage.tap is None:
                return 2.0 * final, 2.0 * wd, {}
            aux = self._ce(self.heads[stage.index](self._tap(stage, conv_outs, block_outs), True), y)
            return aux + final, wd, {}

        return self._step(("block", stage.index), opt.vars, loss, opt.apply)

    def _paper_stage_steps(self, stage: Stage):
        """The authors' alternating steps: the aux loss on segments 0..p + head, then the final loss."""
        steps = []
        if stage.tap is not None:
            opt = self.opts[f"stage{stage.index}_aux"]

            @_no_autograph
            def aux_loss(x, y):
                ce, _, _ = self._dis_loss(stage, x, y, True, True)
                return ce, 0.0, {}

            steps.append(self._step(("stage_aux", stage.index), opt.vars, aux_loss, opt.apply))
        opt_f = self.opts[f"stage{stage.index}_final"]

        @_no_autograph
        def final_loss(x, y):
            return self._ce(self.pruned.forward(x, True, True)[0], y), 0.0, {}

        steps.append(self._step(("stage_final", stage.index), opt_f.vars, final_loss, opt_f.apply))
        return steps

    def _layer_loss(self, stage: Stage, i: int, training: bool, update: bool):
        @_no_autograph
        def loss(x, y):
            dis, reg, conv_outs = self._dis_loss(stage, x, y, training, update)
            rec = self._reconstruction(i, x, conv_outs)
            return rec + dis, reg, {"reconstruction": tf.reduce_sum(rec) / float(self.micro_batch)}

        return loss

    def _score_step(self, stage: Stage, i: int, accum: int):
        """The channel score of conv i, written to scores[i] by the returned step: the gradient of
        L = dis + sum_j [j = i] L_M(j) (Eq. 3 + 6), with [j = i] read from `score_layer`, which is set
        here, so call the step before asking for another layer's. PocketFlow scores one mini-batch per
        pick: one step is traced per stage and shared by its layers (tracing, not arithmetic, dominates
        there; the gradient then reaches every kernel of the stage). The paper accumulates the gradient
        over the whole selection set at every pick: one step per layer, whose gradient stops at conv i."""
        self.score_layer.assign(tf.one_hot(i, len(self.pruned.convs)))
        layers = list(stage.layers) if self.cfg.variant == "pocketflow" else [i]
        kernels = [self.pruned.convs[j].kernel for j in layers]
        scores = [self.scores[str(j)] for j in layers]
        paper, training = self.cfg.variant == "paper", self.bn_training

        @_no_autograph
        def loss(x, y):
            dis, reg, conv_outs = self._dis_loss(stage, x, y, training, False)
            ref = self._reference(x, layers)
            rec = tf.add_n([self.score_layer[j] * self._reconstruction(j, x, conv_outs, ref) for j in layers])
            return rec + dis, reg, {}

        @_no_autograph
        def apply(grads):
            for j, g, score in zip(layers, grads, scores):
                if paper:  # sum over output channels of the Frobenius norm over (kh, kw)
                    s = tf.reduce_sum(tf.sqrt(tf.reduce_sum(tf.square(g), [0, 1])), 1)
                else:  # PocketFlow: squared Frobenius norm of the whole input-channel slice
                    s = tf.reduce_sum(tf.square(g), [0, 1, 3])
                score.assign(tf.where(self.score_layer[j] > 0, s, score))

        return self._step(("score", stage.index, tuple(layers), accum), kernels, loss, apply, accum)

    def _layer_step(self, stage: Stage, i: int):
        opt = self.opts[f"layer{i}"]
        training = self.bn_training  # PocketFlow: training-mode BN with moving-average updates
        return self._step(("layer", i), opt.vars, self._layer_loss(stage, i, training, training), opt.apply)

    def _final_step(self, teacher: ResNet | None):
        opt, cfg = self.opts["final"], self.cfg

        @_no_autograph
        def loss(x, y):
            logits = self.pruned.forward(x, True, True)[0]
            per_example = self._ce(logits, y)
            reg = self._weight_decay() if cfg.variant == "pocketflow" else 0.0
            if teacher is not None:  # PocketFlow's distillation: no T^2 factor
                t = tf.stop_gradient(teacher(x, training=False))
                soft = tf.nn.softmax(t / cfg.tempr_dst)
                per_example += cfg.loss_w_dst * tf.nn.softmax_cross_entropy_with_logits(soft, logits / cfg.tempr_dst)
            return per_example, reg, {}

        return self._step(("final",), opt.vars, loss, opt.apply)

    # ------------------------------------------------------------------------------------------------
    # state: checkpoint + progress file
    # ------------------------------------------------------------------------------------------------

    @property
    def progress_path(self) -> Path:
        return self.run_dir / "progress.json"

    def save(self, stream: data.Stream) -> None:
        self.progress.position = stream.position
        self.progress.checkpoint = self.manager.save()
        checkpoints.write_json(self.progress_path, asdict(self.progress))

    def restore(self) -> bool:
        if not self.progress_path.is_file():
            return False
        saved = checkpoints.read_json(self.progress_path, "the DCP progress file")
        self.progress = Progress(**saved)
        if self.progress.checkpoint:
            self.ckpt.restore(self.progress.checkpoint).assert_existing_objects_matched()
        return True

    # ------------------------------------------------------------------------------------------------
    # the algorithm
    # ------------------------------------------------------------------------------------------------

    def _iters(self, n: int) -> int:
        return max(int(n) // self.workers, 0) if n else 0

    def _epochs_to_iters(self, epochs: float) -> int:
        return int(math.ceil(epochs * self.cfg.nb_epochs_rat * len(self.split) / self.global_batch))

    def selection_split(self):
        return data.first_n(self.split, self.cfg.paper_select_samples)

    def selection_batches(self) -> list:
        """The paper's selection set as fixed micro-batches (no augmentation), built once."""
        if not hasattr(self, "_selection"):
            sel = self.selection_split()
            n = max(len(sel) // self.micro_batch, 1)
            self._selection = list(data.eval_batches(sel, self.micro_batch).take(n))
        return self._selection

    def run(self, teacher: ResNet | None = None) -> dict:
        resumed = self.restore()
        pr = self.progress
        if pr.phase == "done":
            return {"status": "done", "kept": pr.kept}
        if resumed:
            self.log(f"resuming DCP at {pr.phase} (stage {pr.stage}, layer #{pr.layer_pos}, {len(pr.chosen)} chosen)")
        stream = data.Stream(self.split, self.micro_batch, self.cfg.seed, pr.position)
        t0 = time.time()
        while pr.phase in ("block", "select"):
            stage = self.stages[pr.stage]
            if pr.phase == "block":
                self._stage_finetune(stage, stream)
                pr.phase, pr.layer_pos, pr.chosen, pr.steps = "select", 0, [], 0
                self.save(stream)
            while pr.layer_pos < len(stage.layers):
                self._select_layer(stage, stage.layers[pr.layer_pos], stream)
                pr.kept[str(stage.layers[pr.layer_pos])] = sorted(pr.chosen)
                pr.layer_pos, pr.chosen = pr.layer_pos + 1, []
                self.save(stream)
            if pr.stage + 1 < len(self.stages):
                pr.phase, pr.stage, pr.layer_pos = "block", pr.stage + 1, 0
            else:
                pr.phase, pr.steps = "final", 0
            self.save(stream)
        select_seconds = time.time() - t0
        if pr.phase == "final":
            self._final_finetune(stream, teacher)
            pr.phase = "done"
            self.save(stream)
        return {"status": "trained", "kept": pr.kept, "select_seconds": select_seconds}

    def _stage_finetune(self, stage: Stage, stream: data.Stream) -> None:
        pr, cfg = self.progress, self.cfg
        if cfg.variant == "pocketflow":
            total = self._iters(cfg.nb_iters_block)
            steps = [self._block_step(stage)]
        else:
            total = self._epochs_to_iters(cfg.paper_stage_epochs)
            steps = self._paper_stage_steps(stage)
        while pr.steps < total:
            if cfg.variant == "paper":  # lr 0.1, x0.1 at 40 % and 60 % of the stage (epochs 40, 60 of 100)
                lr = cfg.paper_stage_lr * (0.1 ** sum(pr.steps >= total * f for f in (0.4, 0.6)))
                for key in (f"stage{stage.index}_aux", f"stage{stage.index}_final"):
                    if key in self.opts:
                        self.opts[key].lr.assign(lr)
            for s in steps:
                out = self._run_update(s, stream)
            pr.steps += 1
            if cfg.summ_step and pr.steps % cfg.summ_step == 0:
                self.log(f"stage {stage.index} fine-tuning: step {pr.steps}/{total} loss {float(out['loss']):.4f}")
                self._scalars(pr.steps, {"loss": float(out["loss"])}, phase="block", stage=stage.index)
        if cfg.variant == "paper" and stage.index == 0:
            self.full.copy_from(self.pruned)  # v1: reference features from the stage-0 fine-tuned model
        self.log(f"stage {stage.index}: fine-tuned {total} steps")

    def _scalars(self, step: int, values: dict, **fields) -> None:
        if self.metrics is not None:
            self.metrics.scalars(int(step), values, **fields)

    def _run_update(self, step, stream: data.Stream) -> dict:
        out = {}
        for _ in range(step.accum_steps):
            x, y = stream.next()
            out = step(x, y)
        return out

    def _score(self, stage: Stage, i: int, stream: data.Stream) -> np.ndarray:
        if self.cfg.variant == "pocketflow":  # one mini-batch
            self._run_update(self._score_step(stage, i, self.cfg.accum_steps), stream)
        else:  # accumulated over the selection set, fixed order
            batches = self.selection_batches()
            step = self._score_step(stage, i, len(batches))
            for x, y in batches:
                step(x, y)
        return self.scores[str(i)].numpy()

    def _layer_finetune(self, stage: Stage, i: int, stream: data.Stream) -> None:
        step = self._layer_step(stage, i)
        if self.cfg.variant == "pocketflow":
            for _ in range(self._iters(self.cfg.nb_iters_layer)):
                self._run_update(step, stream)
        else:  # one pass over the selection set (shuffled by the stream's permutation)
            sel = self.selection_split()
            for _ in range(max(len(sel) // self.global_batch, 1)):
                self._run_update(step, stream)

    def _select_layer(self, stage: Stage, i: int, stream: data.Stream) -> None:
        pr, cfg = self.progress, self.cfg
        conv = self.pruned.convs[i]
        target = kept_count(conv.c_in, cfg.prune_ratio)
        if target >= conv.c_in:
            return
        if cfg.variant == "paper" and not pr.chosen:
            self.warm[str(i)].assign(conv.kernel)  # start from W = 0 with the fine-tuned weights kept aside
            conv.mask.assign(tf.zeros_like(conv.mask))
            conv.kernel.assign(tf.zeros_like(conv.kernel))
        while len(pr.chosen) < target:
            score = self._score(stage, i, stream)
            if not np.all(np.isfinite(score)):
                raise SelectionError(
                    f"conv #{i} ({conv.label}): non-finite gradient norms in channel selection (the loss "
                    "diverged; lower --dcp_lrn_rate_adam or check the pre-trained model)"
                )
            free = np.ones(conv.c_in, bool)
            free[pr.chosen] = False
            j = int(np.argmax(np.where(free, score + 1e-8, -np.inf)))  # never a chosen channel (PR #147)
            assert free[j], "re-picked a chosen channel"
            mask = conv.mask.numpy()
            if cfg.variant == "pocketflow" and not pr.chosen:
                mask[:] = 0.0  # PocketFlow zeroes the mask after the first pick
            mask[j] = 1.0
            conv.mask.assign(mask)
            if cfg.variant == "pocketflow":
                conv.kernel.assign(conv.kernel * conv.mask4())  # the prune op
            else:
                onehot = tf.reshape(tf.one_hot(j, conv.c_in), [1, 1, -1, 1])
                conv.kernel.assign(conv.kernel + onehot * self.warm[str(i)])  # warm start of channel j
            pr.chosen.append(j)
            pr.picks += 1
            self._layer_finetune(stage, i, stream)
            if cfg.save_every_picks and pr.picks % cfg.save_every_picks == 0 and len(pr.chosen) < target:
                self.save(stream)
            if self.on_pick is not None:
                self.on_pick(stage.index, i, list(pr.chosen))
        self.log(f"stage {stage.index} conv #{i} {conv.label}: kept {len(pr.chosen)}/{conv.c_in} input channels")
        self._scalars(pr.picks, {"kept": len(pr.chosen), "c_in": conv.c_in}, phase="select", layer=conv.label)

    def final_schedule(self) -> tuple[int, Callable[[int], float]]:
        """(iterations, lr(step)) of the final fine-tuning: PocketFlow's ModelHelper schedule (lr 0.1 x
        global batch / 128, x0.1 at epochs 100/150/200 of 250, all scaled by nb_epochs_rat) or the
        paper's (lr 0.1, x0.1 at 160 / 240 of 400)."""
        cfg = self.cfg
        if cfg.variant == "pocketflow":
            lr0 = cfg.lrn_rate_init * self.global_batch / cfg.batch_size_norm
            epochs, bounds = cfg.nb_epochs, cfg.lr_epochs
        else:
            lr0, epochs, bounds = cfg.paper_stage_lr, cfg.paper_final_epochs, cfg.paper_final_lr_epochs
        total = self._epochs_to_iters(epochs)
        its = [self._epochs_to_iters(b) for b in bounds]
        return total, lambda step: lr0 * 0.1 ** sum(step >= b for b in its)

    def _final_finetune(self, stream: data.Stream, teacher: ResNet | None) -> None:
        pr = self.progress
        total, lr = self.final_schedule()
        step = self._final_step(teacher)
        bar = tf_train.progress(total, "final fine-tuning", pr.steps)
        while pr.steps < total:
            self.opts["final"].lr.assign(lr(pr.steps))
            out = self._run_update(step, stream)
            pr.steps += 1
            bar.update(1)
            if self.cfg.summ_step and pr.steps % self.cfg.summ_step == 0:
                self.log(f"final fine-tuning: step {pr.steps}/{total} loss {float(out['loss']):.4f}")
                self._scalars(pr.steps, {"loss": float(out["loss"]), "lr": lr(pr.steps - 1)}, phase="final")
            if self.cfg.save_step and pr.steps % self.cfg.save_step == 0 and pr.steps < total:
                self.save(stream)
        bar.close()
