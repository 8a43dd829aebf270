# ISTA on batch-norm scales (Ye et al., ICLR 2018): ista_tf/ (TensorFlow 2). Included by the Makefile.
.PHONY: ista-demo ista-smoke ista-cifar10-readme ista-paper ista-bench

ista-demo: $(TF_STAMP) ## ISTA: short v0->v3 chain on the demo data (digits, or DATA_DIR), ~1 min on CPU
	$(TF_PY) -m ista_tf.demo $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") --out runs/ista/demo/$$(date +%Y%m%d-%H%M%S) \
		--records runs/ista/demo/records

ista-smoke: $(TF_STAMP) ## ISTA: the README chain with a few steps per stage (DATA_DIR or digits)
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/ista/cifar10_readme.sh

ista-cifar10-readme: $(TF_STAMP) ## ISTA: the README chain (30k+50k+50k steps, eval v2 and v3); needs DATA_DIR
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/ista/cifar10_readme.sh

ista-paper: $(TF_STAMP) ## ISTA: the paper's ResNet-20 model A/B and ConvNet A/B settings; needs DATA_DIR
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/ista/paper_settings.sh

ista-bench: $(TF_STAMP) ## ISTA: compressed vs full inference, XLA vs no XLA training step (ratios)
	$(TF_PY) -m ista_tf.bench
