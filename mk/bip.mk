# BiP, bi-level pruning (Zhang et al., NeurIPS 2022), with HYDRA, OMP, IMP: bip_torch/ (PyTorch). Included by the Makefile.
.PHONY: bip-demo bip-smoke bip-table1 bip-fig3 bip-fig4 bip-time bip-bench

bip-demo: $(TORCH_STAMP) ## BiP: pretrain resnet20s, BiP + HYDRA at k=0.5 (unstructured, filter), slimmed speed
	$(TORCH_PY) -m bip_torch.demo $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") --out runs/bip/demo/$$(date +%Y%m%d-%H%M%S)

bip-smoke: $(TORCH_STAMP) ## BiP: the four reproduction scripts with SMOKE=1 (tiny data, one seed)
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/bip/table1.sh
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/bip/fig3_unstructured.sh
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/bip/fig4_filter.sh
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/bip/time_vs_imp.sh

bip-table1: $(TORCH_STAMP) ## BiP: Table 1 (sparsest winning tickets), 6 columns x 4 methods x 3 seeds (GPU weeks); DATA_DIR
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/bip/table1.sh

bip-fig3: $(TORCH_STAMP) ## BiP: Fig. 3 unstructured curve of one panel (DATASET, ARCH), 3 seeds; DATA_DIR
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/bip/fig3_unstructured.sh

bip-fig4: $(TORCH_STAMP) ## BiP: Fig. 4 filter-wise curves, 4 panels x 8 k x 3 seeds; DATA_DIR
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/bip/fig4_filter.sh

bip-time: $(TORCH_STAMP) ## BiP: one BiP run vs IMP rounds to the same k (CIFAR-10 ResNet-18); DATA_DIR
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/bip/time_vs_imp.sh

bip-bench: $(TORCH_STAMP) ## BiP: slimmed ResNet-18 and VGG-16 (k=0.5 filter) vs dense, 4 runtimes; CSR at 90/98.6 %; epoch costs
	$(TORCH_PY) -m bip_torch.bench
