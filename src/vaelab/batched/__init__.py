"""Members of a sweep trained together: models of one shape, stacked (issue 32, in progress)."""

from vaelab.batched.stack import Stack

__all__ = ["Stack"]
