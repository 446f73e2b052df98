"""Means of per-step training terms, kept on the device until they are logged."""

from collections.abc import Callable

import torch
from torch import Tensor


class RunningMeans:
    """Sums of each term times its batch size over two spans, "window" (since the last read of
    it) and "epoch". Adding costs two small device ops (one stack, one in-place add into both
    spans' rows) and no host synchronisation; reading returns the means and starts the span
    again. Terms that are plain floats (a scheduled beta) are reported as their latest value."""

    SPANS = ("window", "epoch")

    def __init__(self):
        self._sums: Tensor | None = None  # (spans, terms)
        self.counts = dict.fromkeys(self.SPANS, 0)
        self.names: list[str] = []
        self.latest: dict[str, float] = {}

    def add(self, terms: dict[str, Tensor | float], batch_size: int) -> None:
        tensors = {k: v for k, v in terms.items() if isinstance(v, Tensor)}
        self.latest = {k: float(v) for k, v in terms.items() if not isinstance(v, Tensor)}
        step = torch.stack([v.detach().float() for v in tensors.values()])
        if self._sums is None or list(tensors) != self.names:
            self._sums = step.new_zeros(len(self.SPANS), len(step))
            self.names = list(tensors)
        self._sums.add_(step, alpha=batch_size)
        for span in self.SPANS:
            self.counts[span] += batch_size

    def read(self, span: str, total: Callable[[Tensor], Tensor] | None = None) -> dict:
        """The span's means by name ({} when nothing was added), and a fresh start. `total`
        sums a tensor over the processes of a distributed run (the strategy's reduce): then
        the means are over every process's examples."""
        count = self.counts[span]
        if not count:
            return {}
        row = self._sums[self.SPANS.index(span)]
        if total is None:
            means = row / count
        else:
            summed = total(torch.cat([row, row.new_tensor([count])]))
            means = summed[:-1] / summed[-1]
        row.zero_()
        self.counts[span] = 0
        return {**dict(zip(self.names, means, strict=True)), **self.latest}

    def peek(self, span: str) -> dict[str, float]:
        """The span's means so far as floats, without starting it again."""
        count = self.counts[span]
        if not count:
            return {}
        means = (self._sums[self.SPANS.index(span)] / count).tolist()
        return {**dict(zip(self.names, means, strict=True)), **self.latest}

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so that a resumed run's means cover the batches trained
        before the stop too."""
        # On the host: a checkpoint written on a GPU loads anywhere.
        sums = {
            span: self._sums[i].detach().cpu().clone() if self.counts[span] else None
            for i, span in enumerate(self.SPANS)
        }
        return {"sums": sums, "counts": dict(self.counts), "names": list(self.names),
                "latest": dict(self.latest)}  # fmt: skip

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.counts, self.names = dict(state["counts"]), list(state["names"])
        self.latest = dict(state["latest"])
        rows = [state["sums"].get(span) for span in self.SPANS]
        if all(row is None for row in rows):
            self._sums = None
            return
        self._sums = torch.stack(
            [torch.zeros(len(self.names)) if row is None else row.float() for row in rows]
        ).to(device)
