"""Means of per-step training terms, kept on the device until they are logged."""

import torch
from torch import Tensor


class RunningMeans:
    """Sums of each term times its batch size over two spans, "window" (since the last read of
    it) and "epoch". Adding costs two small device ops and no host synchronisation; reading
    returns the means and starts the span again. Terms that are plain floats (a scheduled
    beta) are reported as their latest value."""

    SPANS = ("window", "epoch")

    def __init__(self):
        self.sums: dict[str, Tensor | None] = dict.fromkeys(self.SPANS)
        self.counts = dict.fromkeys(self.SPANS, 0)
        self.names: list[str] = []
        self.latest: dict[str, float] = {}

    def add(self, terms: dict[str, Tensor | float], batch_size: int) -> None:
        tensors = {k: v for k, v in terms.items() if isinstance(v, Tensor)}
        self.latest = {k: float(v) for k, v in terms.items() if not isinstance(v, Tensor)}
        self.names = list(tensors)
        step = torch.stack([v.detach().float() for v in tensors.values()]) * batch_size
        for span in self.SPANS:
            total = self.sums[span]
            self.sums[span] = step if total is None else total + step
            self.counts[span] += batch_size

    def read(self, span: str) -> dict[str, Tensor | float]:
        """The span's means by name ({} when nothing was added), and a fresh start."""
        total, count = self.sums[span], self.counts[span]
        if total is None:
            return {}
        self.sums[span], self.counts[span] = None, 0
        return {**dict(zip(self.names, total / count, strict=True)), **self.latest}

    def peek(self, span: str) -> dict[str, float]:
        """The span's means so far as floats, without starting it again."""
        total, count = self.sums[span], self.counts[span]
        if total is None:
            return {}
        return {**dict(zip(self.names, (total / count).tolist(), strict=True)), **self.latest}

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so that a resumed run's means cover the batches trained
        before the stop too."""
        # On the host: a checkpoint written on a GPU loads anywhere.
        sums = {k: None if v is None else v.detach().cpu() for k, v in self.sums.items()}
        return {"sums": sums, "counts": dict(self.counts), "names": list(self.names),
                "latest": dict(self.latest)}  # fmt: skip

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.sums = {k: None if v is None else v.to(device) for k, v in state["sums"].items()}
        self.counts, self.names = dict(state["counts"]), list(state["names"])
        self.latest = dict(state["latest"])
