"""Parts the training loops share: optimizer and schedule, checkpoints, metrics and progress, ranks."""
