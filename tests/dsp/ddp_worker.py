"""Two SGD steps and two DSP group-learning steps on fixed digits batches (ResNet-8); rank 0 saves both.

    python -m torch.distributed.run --nproc_per_node 2 tests/dsp/ddp_worker.py OUT
    train(DistContext(), dsp, accum)                                     # one process, in the test

BN layers run on their running statistics (eval mode), so that the result does not depend on how
the global batch is split over processes or micro-batches: what is compared is the loop machinery.
"""

import argparse

import torch
from torch import nn

from dsp_torch.dsp_module import GroupWrapper
from dsp_torch.models.cifar_resnet import CifarResNet
from shared.data import CIFAR_MEAN, CIFAR_STD, load_digits_cifar
from shared.torch_train import (
    DistContext,
    TensorLoader,
    accumulate_backward,
    cleanup_distributed,
    setup_distributed,
    wrap_ddp,
)

DEPTH = 8  # the loop machinery does not depend on the depth


@torch.no_grad()
def calibrate_and_freeze_bn(model, images):
    """Running statistics from one pass over the images (cumulative average), then eval-mode BN."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    model(images)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def train(ctx: DistContext, dsp: bool, accum: int = 1) -> dict:
    """The weights after two steps of 16 images (SGD, or SGD + the DSP group-learning step)."""
    torch.manual_seed(0)
    model = CifarResNet(DEPTH)
    data = load_digits_cifar("train").subset(32)
    loader = TensorLoader(data.images, data.labels, 16, ctx.device, CIFAR_MEAN, CIFAR_STD, train=True, seed=0, ctx=ctx)
    train_model = wrap_ddp(model, ctx)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    crit = nn.CrossEntropyLoss()

    def backward(x, y):
        accumulate_backward(train_model, crit, x, y, accum, ctx.device)

    gw = None
    if dsp:
        gw = GroupWrapper(
            model,
            opt,
            crit,
            0.02,
            4,
            4,
            0.5,
            generator=torch.Generator().manual_seed(5),
            backward_fn=backward,
            verbose=False,
        )
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():  # start from distinct logits: argmax ties would amplify float noise
            for layer in gw.layers:
                layer.group.copy_(torch.randn(layer.group.shape, generator=g))
    eval_loader = TensorLoader(data.images, data.labels, 32, ctx.device, CIFAR_MEAN, CIFAR_STD, train=False)
    calibrate_and_freeze_bn(model, next(iter(eval_loader))[0])
    for x, y in loader:
        if gw:
            gw.initialize()
        opt.zero_grad()
        backward(x, y)
        opt.step()
        if gw:
            gw.after_step(x, y)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    args = p.parse_args()
    torch.set_num_threads(1)
    ctx = setup_distributed("cpu")
    results = {"sgd": train(ctx, False), "dsp": train(ctx, True)}
    if ctx.is_main:
        torch.save(results, args.out)
    if ctx.distributed:
        torch.distributed.barrier()  # no rank tears the group down while another still uses it
    cleanup_distributed()


if __name__ == "__main__":
    main()
