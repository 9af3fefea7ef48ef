"""``fastml demo``: an end-to-end training loop with fastml, next to the same loop in PyTorch."""

from .command import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
