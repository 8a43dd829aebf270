"""EKG (Lee & Song, ECCV 2022): ensemble-knowledge-guided sub-network search and memory-bank
fine-tuning for filter pruning, in TensorFlow 2. See ekg_tf2/README.md."""
