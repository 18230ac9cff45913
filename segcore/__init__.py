"""Core of segsweep: data, models, losses, metrics and the training loop.

This package does not import Ray or MLflow. Metrics and checkpoints leave the
training loop through a callback, so the same code serves the command line,
the sweep and the tests.
"""

__version__ = "0.1.0"
