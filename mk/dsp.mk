# DSP, Dynamic Structure Pruning (Park et al., AAAI 2023): dsp_torch/ (PyTorch). Included by the Makefile.
.PHONY: dsp-demo dsp-smoke dsp-cifar10-table dsp-imagenet-table dsp-bench dsp-released

dsp-demo: $(TORCH_STAMP) ## DSP: pretrain, group learning, prune 50 %, fine-tune, pack on the demo data (~2 min CPU)
	$(TORCH_PY) -m dsp_torch.demo $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") --out runs/dsp/demo/$$(date +%Y%m%d-%H%M%S)

dsp-smoke: $(TORCH_STAMP) ## DSP: both table scripts with SMOKE=1 (tiny data, one seed)
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/dsp/cifar10_table.sh
	PY="$(TORCH_PY)" SMOKE=1 bash scripts/dsp/imagenet_table.sh

dsp-cifar10-table: $(TORCH_STAMP) ## DSP: README CIFAR-10 table, ResNet-20/56 x g=2,3,4 x 5 seeds (GPU days); DATA_DIR
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/dsp/cifar10_table.sh

dsp-imagenet-table: $(TORCH_STAMP) ## DSP: README ImageNet table (inferred recipe); TRAIN, VAL, R18/R50_WEIGHTS
	PY="$(TORCH_PY)" bash scripts/dsp/imagenet_table.sh

dsp-released: $(TORCH_STAMP) ## DSP: evaluate the six released models, write released-model records; DATA_DIR, CKPT_DIR
	PY="$(TORCH_PY)" DATA_DIR="$(DATA_DIR)" CKPT_DIR="$(CKPT_DIR)" bash scripts/dsp/released_models.sh

dsp-bench: $(TORCH_STAMP) ## DSP: dense / authors' packed / our packed ResNet-56 g=4 throughput and ratios; CKPT_DIR
	@if [ -z "$(CKPT_DIR)" ] || [ ! -f "$(CKPT_DIR)/dsp/resnet56_g4.pt" ]; then \
	  echo "error: make dsp-bench needs the authors' released ResNet-56 g=4: set CKPT_DIR to the folder holding" \
	    "dsp/resnet56_g4.pt ($(if $(CKPT_DIR),CKPT_DIR=$(CKPT_DIR) has no dsp/resnet56_g4.pt,CKPT_DIR is not set);" \
	    "it defaults to \$$PRUNING_CHECKPOINT_DIR)" >&2; exit 2; fi
	$(TORCH_PY) -m dsp_torch.bench --ckpt "$(CKPT_DIR)/dsp/resnet56_g4.pt"
