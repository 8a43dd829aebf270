# DCP, Discrimination-aware Channel Pruning (Zhuang et al., NeurIPS 2018): dcp_tf/ (TensorFlow 2). Included by the Makefile.
.PHONY: dcp-demo dcp-smoke dcp-cifar10-table1 dcp-imagenet-table5 dcp-bench

dcp-demo: $(TF_STAMP) ## DCP: short baseline, DCP at 0.5, export and timing (digits, or DATA_DIR), ~1 min on CPU
	$(TF_PY) -m dcp_tf.demo $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") --out runs/dcp/demo/$$(date +%Y%m%d-%H%M%S) \
		--records runs/dcp/demo/records

dcp-smoke: $(TF_STAMP) ## DCP: Table 1 script (ResNet-8, tiny counts; DATA_DIR or digits), Table 5 on a generated JPEG folder
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" SMOKE=1 bash scripts/dcp/cifar10_table1.sh
	PY="$(TF_PY)" SMOKE=1 bash scripts/dcp/imagenet_table5.sh

dcp-cifar10-table1: $(TF_STAMP) ## DCP: paper PreResNet-56 at 0.5 and PocketFlow ResNet-20 at 0.5; needs DATA_DIR
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/dcp/cifar10_table1.sh

dcp-imagenet-table5: $(TF_STAMP) ## DCP: Table 5 complexity (ResNet-18/50 at 0.3/0.5/0.7), PocketFlow-style DCP on ILSVRC-12; needs DATA_DIR
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" bash scripts/dcp/imagenet_table5.sh

dcp-bench: $(TF_STAMP) ## DCP: dense vs PocketFlow-style export vs ours, tf.function/TFLite/onnxruntime, batch 128 and 1
	$(TF_PY) -m dcp_tf.bench
