"""DCP, Discrimination-aware Channel Pruning (Zhuang et al., NeurIPS 2018), in TensorFlow 2, as Tencent
PocketFlow's `dis-chn-pruned` learner runs it (variant `pocketflow`) and as the authors' 2018 code made
the paper's tables (variant `paper`). See dcp_tf/README.md."""
