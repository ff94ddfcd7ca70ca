"""Training (torch): masked-span pretraining, few-shot head fine-tuning, checkpoints. Not on the device path."""
