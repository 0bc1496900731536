"""Training: what a run is and how it steps.

Owns the run configs and the one table of profiles, the run store (a run addressed by the hash
of its config, resumed after a kill, claimed by one process at a time), the batches drawn from
the feature cache, the training step, the epoch loop, and devices (precision, memory format,
torch.distributed).

May import: data, nn.
"""
