"""The three DSP stages' epoch logic, one module each: `pretrain` (dense training), `group_learning`
(differentiable group learning) and `finetune` (pruning to the FLOPs target and cyclic fine-tuning).
The CIFAR and ImageNet entry points call their `fit` functions with a `runner.StageRunner`."""
