"""trainer.threads: torch's threads for one run's math on the CPU."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` while the block runs (None: left as they are),
    then put back: a process that goes on after the run (a notebook, a sweep's next job) keeps
    its own number."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
