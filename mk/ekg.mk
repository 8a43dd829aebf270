# EKG, Ensemble Knowledge Guided sub-network search and fine-tuning (Lee & Song, ECCV 2022): ekg_tf2/
# (TensorFlow 2). Included by the Makefile.
.PHONY: ekg-demo ekg-smoke ekg-cifar-ablation ekg-imagenet ekg-bench

ekg-demo: $(TF_STAMP) ## EKG: search, memory bank, slimming, both fine-tunings, small (DATA_DIR, CKPT_DIR optional)
	PRUNING_CHECKPOINT_DIR="$(CKPT_DIR)" $(TF_PY) -m ekg_tf2.demo $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
		--out runs/ekg/demo/$$(date +%Y%m%d-%H%M%S) --records runs/ekg/demo/records

ekg-smoke: $(TF_STAMP) ## EKG: both scripts with SMOKE=1 (authors' ResNet-56; ResNet-50 on a generated JPEG folder)
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" CKPT_DIR="$(CKPT_DIR)" SMOKE=1 bash scripts/ekg/cifar_ablation.sh
	PY="$(TF_PY)" SMOKE=1 bash scripts/ekg/imagenet_resnet50.sh

ekg-cifar-ablation: $(TF_STAMP) ## EKG: ResNet-56 CIFAR-10/100, both fine-tuning variants, 3 seeds; DATA_DIR, CKPT_DIR
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" CKPT_DIR="$(CKPT_DIR)" bash scripts/ekg/cifar_ablation.sh

ekg-imagenet: $(TF_STAMP) ## EKG: ResNet-50 ImageNet 45 % / 55 %, recipe inferred; DATA_DIR (train/ val/), R50_PARAMS
	PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" R50_PARAMS="$(R50_PARAMS)" bash scripts/ekg/imagenet_resnet50.sh

ekg-bench: $(TF_STAMP) ## EKG: slimmed vs dense ResNet-56 under every TF runtime, XLA step, search cost
	$(TF_PY) -m ekg_tf2.bench $(if $(DATA_DIR),--data_dir "$(DATA_DIR)")
