"""What every model family shares: configs, registries, checkpoints, inputs, losses, the trainer."""
