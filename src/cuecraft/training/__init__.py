"""Training: corpus, checkpoints and the training loop."""
