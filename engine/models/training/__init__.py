"""Training of the joint model: data preparation, sampling, losses, loop, metrics, quality fitting."""
