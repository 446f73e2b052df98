"""What many tests share: reading a run's files, comparing runs, and callbacks that tests inject
(also through the config, to run in a real training subprocess)."""

import csv
import itertools
import math
import os
import signal as signal_module
import subprocess
import time
from pathlib import Path

import lightning as L
import torch


def metrics_rows(run_dir: Path, name: str = "metrics.csv") -> list[dict]:
    """The rows of a run's metrics.csv (or a sweep's sweep.csv), as csv.DictReader gives them."""
    with open(Path(run_dir) / name, newline="") as file:
        return list(csv.DictReader(file))


def assert_same_tensors(a, b, where: str = "", rtol: float = 0) -> None:
    """Nested dicts, lists and tensors equal bit for bit (other values equal); with `rtol`,
    floating-point tensors and numbers equal to that relative tolerance (and as much absolute)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}", rtol)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, torch.Tensor) and rtol and a.is_floating_point():
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol, msg=where)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, float) and rtol:
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=rtol), (where, a, b)
    else:
        assert a == b, where


def last_step(run_dir: Path) -> int:
    """The global step of a run's last.ckpt."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return torch.load(path, weights_only=True)["global_step"]


def assert_same_run(run_dir: Path, reference: Path, rows: bool = True, rtol: float = 0) -> None:
    """Two runs ended alike: last.ckpt at the same step with the same weights, and (`rows`)
    the same metrics.csv; with `rtol`, numbers the same to that relative tolerance."""
    ours, theirs = (
        torch.load(Path(folder) / "checkpoints" / "last.ckpt", weights_only=True)
        for folder in (run_dir, reference)
    )
    assert ours["global_step"] == theirs["global_step"]
    assert_same_tensors(ours["state_dict"], theirs["state_dict"], "state_dict", rtol)
    if rows:
        numbers = [[{k: float(v) if v else None for k, v in row.items()} for row in
                    metrics_rows(folder)] for folder in (run_dir, reference)]  # fmt: skip
        assert_same_tensors(*numbers, "metrics.csv", rtol)


_ports = itertools.count()


def meeting_port() -> int:
    """A port for a test's processes to meet on (MASTER_PORT). Below Linux's ephemeral range
    (32768 and up), from which bind(0) and outgoing connections draw, and apart for each xdist
    worker: no other test can take it between its choice and its use."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return 23000 + 500 * worker + next(_ports) % 500


def slurm_restarted() -> bool:
    """This SLURM job runs again (requeued): a callback that acts on its first run stays quiet."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


class Killed(Exception):
    """The process ends here, as `kill -9` would end it: no checkpoint on the way out."""


class StopAt(L.Callback):
    """Stops a run at a known point, as something outside it would: after the optimizer step
    that reaches `step` (stage "train"), or at the first batch of validation or testing once
    that step is reached ("val", "test"; "none": never). `by` is a signal sent to this process
    (SIGKILL: kill -9, no clean-up; SIGTERM: a scheduler's pre-emption; SIGINT: Ctrl-C; SIGUSR1)
    (in a test's own process too: Lightning handles SIGTERM while it fits, and stops after a
    validation that is due, as for a scheduler's) or "Killed", an exception raised there (the
    process ends there, no checkpoint on the way out). With several optimizer steps per call,
    after the call that reaches `step`. With `flag`, once among processes: the first to get there
    leaves that file, and the others go on."""

    acts_once_per_call = True

    def __init__(self, step: int, stage: str = "train", by: str = "SIGTERM", flag: str = ""):
        self.step, self.stage, self.by, self.done = step, stage, by, False
        self.flag = Path(flag) if flag else None

    def _maybe(self, trainer, stage: str) -> None:
        if stage != self.stage or trainer.global_step < self.step or self.done:
            return
        self.done = True
        if self.flag is not None:
            try:
                self.flag.touch(exist_ok=False)
            except FileExistsError:
                return
        if self.by == "Killed":
            raise Killed
        os.kill(os.getpid(), getattr(signal_module, self.by))

    def on_train_batch_end(self, trainer, *args):
        self._maybe(trainer, "train")

    def on_validation_batch_start(self, trainer, *args):
        if not trainer.sanity_checking:
            self._maybe(trainer, "val")

    def on_test_batch_start(self, trainer, *args):
        self._maybe(trainer, "test")


class HoldUntilStopped(L.Callback):
    """Holds a SLURM job's first run after the optimizer step that reaches `step` until
    something outside ends the process (a time limit's signal): training speed then cannot decide
    whether the job meets its limit."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        restarted = slurm_restarted()
        if restarted or trainer.global_step < self.step:
            return
        while True:
            time.sleep(0.1)


class Cancel(L.Callback):
    """Cancels this SLURM job (`scancel`, what a user or an administrator does) at test batch
    `batch`, once: the first job to get there leaves `flag`, so that the same command started
    again is not cancelled too."""

    def __init__(self, batch: int, flag: str):
        self.batch, self.flag = batch, Path(flag)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx != self.batch or self.flag.exists():
            return
        self.flag.touch()
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{array}_{task}" if array else os.environ["SLURM_JOB_ID"]  # a task by its own id
        done = subprocess.run(["scancel", job], capture_output=True, text=True, check=True)
        assert not done.stderr, done.stderr  # scancel exits 0 on an unknown job id


class StopServer(L.Callback):
    """Stops a server (SIGKILL to the process group it leads) after the optimizer step that
    reaches `step`: a tracking server that goes away in the middle of a run."""

    def __init__(self, pid: int, step: int):
        self.pid, self.step, self.done = pid, step, False

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step and not self.done:
            self.done = True
            os.killpg(self.pid, signal_module.SIGKILL)


class RecordBatches(L.Callback):
    """Writes every training example this rank saw, as rows of x, to <folder>/rank<N>.pt."""

    def __init__(self, folder: str):
        self.folder, self.rows = folder, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rows.append(batch[0].flatten(1).cpu())

    def on_train_end(self, trainer, pl_module):
        os.makedirs(self.folder, exist_ok=True)
        torch.save(torch.cat(self.rows), os.path.join(self.folder, f"rank{trainer.global_rank}.pt"))


class PoisonWeights(L.Callback):
    """Sets the first weight tensor to NaN after the optimizer step that reaches `step`: what an
    exploding update does, at a known point."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class Requeue(L.Callback):
    """Asks SLURM to requeue this job (`scontrol requeue`, what a pre-emption does) after the
    optimizer step that reaches `step`, in the job's first run only; SLURM then stops the job with
    SIGTERM and starts it again."""

    def __init__(self, step: int):
        self.step, self.done = step, False

    def on_train_batch_end(self, trainer, *args):
        restarted = slurm_restarted()
        if self.done or restarted or trainer.global_step < self.step:
            return
        self.done = True
        if trainer.is_global_zero:  # one request for the job, whatever its number of tasks
            subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=True)
