"""EKG's sub-network search on the pseudo-supernet (research/ekg.md 1.1-1.7; poster Algorithm 1).

The network weights are never trained here; only the gates change. Per iteration i:

1. Importance (Eq. 9): over D^val, with BN batch statistics, S_c = sum over batches of
   |sum_{b,h,w} dR/dy * y| at every site where the channel's gate is applied (abs per batch and per
   site, then summed), R = CE(labels, logits) + CE(softmax(T_i), logits) per example, / batch size.
2. `order` = rank by S (the kept channels first, so sub-networks are nested).
3. Candidates (Phi_i): one per gate, its width lowered by max(1/C, search_step / num_call); cost = the
   scores of the channels it would remove. Trimmed Otsu (20 % trimmed at each end) keeps the
   candidates with cost <= the threshold.
4. Each kept candidate is evaluated on D^val: score = sum over batches of sum_b [CE + CE(softmax(T_i),
   logits)] / batch (the negative reward, Eq. 7). A candidate that would cross the FLOPs target is
   first raised back in steps of 1/C until it lands just at or under it (`fine_search`).
5. argmin of the score is applied; T_{i+1} = running mean of the logits of Theta_0..Theta_{i+1} (Eq. 8).

The search stops once FLOPs(kept) / FLOPs(original) <= search_target_rate, measured with EKG's own
counter (`ekg-code`: MACs + 2*H*W*C per BN + FC). `history` holds, per chosen sub-network, its D^val
CE loss, accuracy, score, FLOPs and every gate's rate and order (the memory bank picks from it).

Distribution: every D^val batch is split over the replicas (`shared.tf_train.split_global_batch`),
BN statistics are those of the global batch, the per-site signed sums are all-reduced before the
absolute value and the logits are gathered in batch order, so R replicas compute what one device does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ekg_tf2.models import ResNet
from shared import flops, tf_train
from shared.errors import check_range

CONVENTION = "ekg-code"


@dataclass(frozen=True)
class SearchConfig:
    search_target_rate: float = 0.45  # fraction of FLOPs KEPT
    search_step: float = 0.2
    search_batch_size: int = 256
    trim: float = 0.2  # trimmed Otsu: fraction dropped at each end
    max_iterations: int = 100_000

    def validate(self) -> None:
        check_range("--search_target_rate", self.search_target_rate, 0.0, 1.0, low_open=True)
        check_range("--search_step", self.search_step, 0.0, 1.0, low_open=True)
        check_range("trim", self.trim, 0.0, 0.5, high_open=True)


def step_size(channels: int, num_call: int, search_step: float) -> float:
    """A gate's width step: max(1/C, search_step / num_call) (research/ekg.md 1.5)."""
    return max(1.0 / channels, search_step / max(num_call, 1))


def trimmed_otsu(costs: np.ndarray, trim: float = 0.2) -> float:
    """Otsu threshold of the costs after dropping ceil(trim * n) values at each end of the sorted
    list: the split maximising w0 * w1 * (m0 - m1)^2; returns the largest cost of the lower class.
    With fewer than two values left, every candidate passes (the largest cost)."""
    c = np.sort(np.asarray(costs, np.float64))
    k = int(math.ceil(trim * len(c)))
    core = c[k : len(c) - k]
    if len(core) < 2:
        return float(c[-1])
    best, threshold = -1.0, float(core[-1])
    n = len(core)
    for i in range(1, n):
        w0, w1 = i / n, (n - i) / n
        between = w0 * w1 * (core[:i].mean() - core[i:].mean()) ** 2
        if between > best:
            best, threshold = between, float(core[i - 1])
    return threshold


def soft_cross_entropy(teacher_logits: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """CE(softmax(teacher), logits) per example (temperature 1): the search's ensemble-KD term."""
    return -tf.reduce_sum(tf.nn.softmax(teacher_logits) * tf.nn.log_softmax(logits), -1)


def rank_channels(score: np.ndarray, kept_mask: np.ndarray) -> np.ndarray:
    """order[c] = rank of channel c: the kept channels by descending score, then the removed ones."""
    idx = np.lexsort((-score, ~kept_mask))  # primary: kept first; secondary: higher score first
    order = np.empty(len(score), np.float32)
    order[idx] = np.arange(len(score))
    return order


KEEP_TRACED = True  # False: the search's passes follow functions_run_eagerly too (a search of a few passes)


def _traced():
    """The search's passes stay traced inside `functions_run_eagerly` blocks unless KEEP_TRACED is off."""
    return tf_train.functions_run_eagerly(tf.config.functions_run_eagerly() and not KEEP_TRACED)


class DistributedForward:
    """Compiled forward passes of the gated model on global batches, under a strategy. They run
    traced even where the caller runs functions eagerly (`shared.tf_train.functions_run_eagerly`, smoke runs):
    a search calls them hundreds of times."""

    def __init__(self, model: ResNet, strategy: tf.distribute.Strategy, jit_compile: bool = False):
        self.model, self.strategy = model, strategy
        # the model's Python control flow never depends on a tensor: traced without autograph
        self._eval = tf_train.compile_fn(self._eval_fn, jit_compile, strategy, autograph=False)
        self._importance = tf_train.compile_fn(self._importance_fn, jit_compile, strategy, autograph=False)

    def _gather(self, value):
        return self.strategy.gather(value, axis=0) if self.strategy.num_replicas_in_sync > 1 else value

    def _run(self, fn, *tensors):
        parts = tf_train.split_global_batch(self.strategy, *tensors)
        return self.strategy.run(fn, args=tuple(parts))

    def _eval_fn(self, x, y, t):
        def replica(x, y, t):
            logits = self.model(x, training=True)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            return logits, ce, soft_cross_entropy(t, logits)

        return tuple(self._gather(v) for v in self._run(replica, x, y, t))

    def _importance_fn(self, x, y, t, batch):
        model = self.model

        def replica(x, y, t):
            probes = {site: tf.ones([model.widths[g]]) for site, g in model.sites}
            with tf.GradientTape() as tape:
                tape.watch(list(probes.values()))
                logits = model(x, training=True, probes=probes)
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits) + soft_cross_entropy(t, logits)
                r = tf.reduce_sum(per_example) / batch
            return tape.gradient(r, probes)

        grads = self._run(replica, x, y, t)
        if self.strategy.num_replicas_in_sync > 1:
            grads = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in grads.items()}
        return grads

    def evaluate(self, x, y, t):
        """(logits, CE per example, KD term per example) of one global batch."""
        with _traced():
            return self._eval(x, y, t)

    def importance(self, x, y, t) -> dict[str, tf.Tensor]:
        """Per site: sum over the batch of dR/dy * y (signed, all replicas summed)."""
        with _traced():
            return self._importance(x, y, t, tf.constant(float(x.shape[0])))

    def logits(self, x):
        """Logits of one global batch with BN batch statistics (the memory bank's pass): the evaluation
        pass's graph with blank labels and teacher, so the search and the bank share one trace."""
        n = int(x.shape[0])
        return self.evaluate(x, tf.zeros([n], tf.int32), tf.zeros([n, self.model.num_classes]))[0]


class EKGSearch:
    """The search loop and its state (resumable through `state()` / `restore()`)."""

    def __init__(
        self,
        model: ResNet,
        strategy: tf.distribute.Strategy,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        cfg: SearchConfig,
        *,
        jit_compile: bool = False,
        log: Callable[[str], None] = print,
    ):
        cfg.validate()
        if not model.gates:
            with strategy.scope():
                model.attach_gates()
        self.model, self.strategy, self.cfg, self.log = model, strategy, cfg, log
        self.forward = DistributedForward(model, strategy, jit_compile)
        self.val_x = np.asarray(val_images, np.float32)
        self.val_y = np.asarray(val_labels, np.int32)
        self.ori_flops = self.flops(self.full_kept())
        self.iteration = 0
        self.members = 1  # networks averaged into T
        self.knowledge: np.ndarray | None = None
        self.history: list[dict] = []
        self.seconds: list[float] = []

    # ---- counting ----------------------------------------------------------------------------------

    def full_kept(self) -> dict[str, int]:
        return {g: gate.channels for g, gate in self.model.gates.items()}

    def kept(self) -> dict[str, int]:
        return {g: gate.live() for g, gate in self.model.gates.items()}

    def flops(self, kept: dict[str, int] | None = None) -> int:
        return flops.count(self.model.specs(kept), CONVENTION).macs

    def flops_rate(self) -> float:
        return self.flops() / self.ori_flops

    @property
    def target_flops(self) -> float:
        return self.cfg.search_target_rate * self.ori_flops

    def done(self) -> bool:
        return self.flops_rate() <= self.cfg.search_target_rate or self.iteration >= self.cfg.max_iterations

    # ---- passes over D^val -------------------------------------------------------------------------

    def _batches(self):
        b = self.cfg.search_batch_size
        for i in range(0, len(self.val_y), b):
            yield i, tf.constant(self.val_x[i : i + b]), tf.constant(self.val_y[i : i + b])

    def _teacher(self, i: int, n: int, logits_dim: int) -> tf.Tensor:
        if self.knowledge is None:
            return tf.zeros([n, logits_dim])
        return tf.constant(self.knowledge[i : i + n])

    def evaluate(self) -> dict:
        """Logits, accuracy, CE loss and score (sum over batches of sum_b [CE + KD] / batch) on D^val."""
        logits, correct, ce_sum, score = [], 0, 0.0, 0.0
        k = self.model.num_classes
        for i, x, y in self._batches():
            n = int(y.shape[0])
            lg, ce, kd = self.forward.evaluate(x, y, self._teacher(i, n, k))
            lg, ce, kd = lg.numpy(), ce.numpy(), kd.numpy()
            logits.append(lg)
            correct += int(np.sum(lg.argmax(1) == y.numpy()))
            ce_sum += float(ce.sum())
            score += float((ce + (kd if self.knowledge is not None else 0.0)).sum()) / n
        n_all = len(self.val_y)
        return {"logits": np.concatenate(logits), "acc": correct / n_all, "loss": ce_sum / n_all, "score": score}

    def importance(self) -> dict[str, np.ndarray]:
        """Eq. (9) for every gate: sum over batches and sites of |sum_{b,h,w} dR/dy * y|."""
        scores = {g: np.zeros(gate.channels, np.float64) for g, gate in self.model.gates.items()}
        k = self.model.num_classes
        for i, x, y in self._batches():
            grads = self.forward.importance(x, y, self._teacher(i, int(y.shape[0]), k))
            for site, group in self.model.sites:
                scores[group] += np.abs(grads[site].numpy().astype(np.float64))
        for g, gate in self.model.gates.items():
            gate.score.assign(scores[g].reshape(1, 1, 1, -1).astype(np.float32))
        return scores

    # ---- state -------------------------------------------------------------------------------------

    def _mask_state(self) -> dict:
        return {
            "rates": {g: float(gate.rate.numpy()) for g, gate in self.model.gates.items()},
            "orders": {g: gate.order.numpy().ravel().astype(np.int32) for g, gate in self.model.gates.items()},
            "kept": self.kept(),
        }

    def apply_mask_state(self, entry: dict) -> None:
        for g, gate in self.model.gates.items():
            gate.set_order(entry["orders"][g])
            gate.set_rate(entry["rates"][g])

    def _record(self, ev: dict) -> None:
        entry = {
            "iteration": self.iteration,
            "loss": ev["loss"],
            "acc": ev["acc"],
            "score": ev["score"],
            "flops": self.flops(),
            "flops_rate": self.flops_rate(),
            **self._mask_state(),
        }
        self.history.append(entry)

    def start(self) -> dict:
        """T_0 = logits of the unpruned network on D^val; history[0] = the unpruned network."""
        ev = self.evaluate()
        self.knowledge, self.members = ev["logits"], 1
        self._record(ev)
        return ev

    def state(self) -> dict:
        return {
            "iteration": self.iteration,
            "members": self.members,
            "knowledge": self.knowledge,
            "history": self.history,
            "seconds": self.seconds,
            "ori_flops": self.ori_flops,
        }

    def restore(self, state: dict) -> None:
        self.iteration, self.members = int(state["iteration"]), int(state["members"])
        self.knowledge, self.history = state["knowledge"], list(state["history"])
        self.seconds = list(state.get("seconds", []))
        self.apply_mask_state(self.history[-1])

    # ---- one iteration -----------------------------------------------------------------------------

    def candidates(self, scores: dict[str, np.ndarray]) -> list[dict]:
        """One candidate per gate that can still lose a channel: its new rate and kept count, and the
        cost = the importance of the channels it would remove (next in the ascending-score order)."""
        out = []
        for g, gate in self.model.gates.items():
            rate = float(gate.rate.numpy())
            kept = gate.live()
            new_rate = rate - step_size(gate.channels, gate.num_call, self.cfg.search_step)
            new_kept = gate.kept_for(gate.channels, new_rate)
            if rate <= 0 or new_kept >= kept:
                continue  # at width 0 / its minimum of one channel
            order = gate.order.numpy().ravel()
            removed = (order >= new_kept) & (order < kept)
            out.append({"gate": g, "rate": new_rate, "kept": new_kept, "cost": float(scores[g][removed].sum())})
        return out

    def fine_search(self, cand: dict) -> dict:
        """Raise a candidate that overshoots the FLOPs target in steps of 1/C, to land at or just under it."""
        g, gate = cand["gate"], self.model.gates[cand["gate"]]
        kept = self.kept()
        kept[g] = cand["kept"]
        if self.flops(kept) >= self.target_flops:
            return cand
        current = gate.live()
        best = cand["kept"]
        for k in range(cand["kept"] + 1, current):
            kept[g] = k
            if self.flops(kept) <= self.target_flops:
                best = k
            else:
                break
        return {**cand, "kept": best, "rate": best / gate.channels, "fine_search": best != cand["kept"]}

    def step(self) -> dict:
        t0 = time.time()
        scores = self.importance()
        for g, gate in self.model.gates.items():
            gate.set_order(rank_channels(scores[g], gate.order.numpy().ravel() < gate.live()))
        cands = self.candidates(scores)
        if not cands:
            raise RuntimeError("no gate can lose a channel, yet the FLOPs target is not reached")
        threshold = trimmed_otsu([c["cost"] for c in cands], self.cfg.trim)
        chosen = [self.fine_search(c) for c in cands if c["cost"] <= threshold]
        results = []
        for cand in chosen:
            gate = self.model.gates[cand["gate"]]
            old = float(gate.rate.numpy())
            gate.set_rate(cand["rate"])
            ev = self.evaluate()
            gate.set_rate(old)
            results.append((ev["score"], cand, ev))
        best = int(np.argmin([r[0] for r in results]))
        score, cand, ev = results[best]
        self.model.gates[cand["gate"]].set_rate(cand["rate"])
        # Eq. (8): running mean of the logits of the original network and every chosen sub-network
        self.knowledge = (self.knowledge * self.members + ev["logits"]) / (self.members + 1)
        self.members += 1
        self.iteration += 1
        self._record(ev)
        self.seconds.append(time.time() - t0)
        info = {
            "iteration": self.iteration,
            "evaluated": len(chosen),
            "candidates": len(cands),
            "gate": cand["gate"],
            "kept": cand["kept"],
            "score": score,
            "loss": ev["loss"],
            "acc": ev["acc"],
            "flops_rate": self.flops_rate(),
            "seconds": self.seconds[-1],
            "scores": [r[0] for r in results],
            "chosen": [r[1]["gate"] for r in results],
        }
        self.log(
            f"iter {self.iteration}: # of layers to evaluated is {len(chosen)}/{len(cands)}; "
            f"pruned {cand['gate']} to {cand['kept']}/{self.model.gates[cand['gate']].channels}; "
            f"val loss {ev['loss']:.4f}, acc {100 * ev['acc']:.2f} %, FLOPs kept {100 * info['flops_rate']:.2f} % "
            f"({info['seconds']:.1f} s)"
        )
        return info

    def run(self, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        if not self.history:
            self.start()
        while not self.done():
            info = self.step()
            if on_iteration is not None:
                on_iteration(info)
        return self.history
