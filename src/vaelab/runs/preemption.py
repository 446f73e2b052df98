"""SIGTERM, how schedulers pre-empt a job: the run is saved and the process exits with 143.

While Lightning fits or tests, its own handler notes the signal and stops the loop at the next
batch's end; vaelab.callbacks.CheckpointOnSigterm then writes last.ckpt and train() raises
Preempted. Outside Lightning (reading the data, writing the results), `preemptible` raises
Preempted at once: the run's newest checkpoint is already on disk.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from vaelab.errors import Preempted


def preempted(run_dir: Path, saved: str | None = None) -> Preempted:
    """The error that ends a pre-empted run, saying how to continue it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    where = f" ({saved} holds it)" if saved else ""
    how = f"continue the run with vaelab-train resume={run_dir}"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        how = (
            f"finish the sweep by starting the same command again with "
            f"hydra.sweep.dir={HydraConfig.get().sweep.dir}"
        )
    return Preempted(f"stopped by SIGTERM{where}: {how}")


@contextlib.contextmanager
def preemptible(run_dir: Path, resumable: bool = True) -> Iterator[None]:
    """SIGTERM raises Preempted, except inside Lightning's loops of a training run, which stop on
    their own. A command that saves no state to continue from (`resumable=False`: vaelab-eval,
    -embed, -sample) stops at once, inside Lightning's loops too."""

    def stop(signum, frame) -> None:
        if not resumable:
            raise Preempted(f"stopped by SIGTERM: {run_dir} is incomplete; run the command again")
        # Lightning keeps the handler it finds and calls it from its own: then this is not the
        # process's handler, and Lightning ends the loop where the run can be saved whole.
        if signal.getsignal(signal.SIGTERM) is stop:
            raise preempted(run_dir)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
