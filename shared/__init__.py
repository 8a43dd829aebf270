"""Framework-free ground for the five subprojects.

`shared` imports only the standard library, numpy, pyyaml and lmdb (matplotlib lazily, for plots).
It never imports torch or tensorflow; the framework-specific loop helpers live in
`shared.torch_train` and `shared.tf_train`, which only the subprojects of that framework import.

- `shared.data`: dataset readers and preparers (CIFAR-10/100, TinyImageNet, ImageNet, LMDB, digits).
- `shared.flops`: layer specs and named counting conventions; `shared.archs`: specs of the papers' models.
- `shared.results`: reported tables, run records, `python -m shared.results check|tables`.
"""

__version__ = "0.1.0"
