"""Members of a sweep trained together: models of one shape, stacked (issue 32, in progress)."""

from vaelab.batched.batches import StackedBatches, member_batches
from vaelab.batched.stack import Stack

__all__ = ["Stack", "StackedBatches", "member_batches"]
