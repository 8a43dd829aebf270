"""BiP, bi-level pruning (Zhang et al., NeurIPS 2022), with HYDRA (Sehwag et al., NeurIPS 2020), OMP and
IMP, in PyTorch, with the interface of the original OPTML-Group/BiP `train.py`."""
