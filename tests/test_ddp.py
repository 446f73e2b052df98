"""Data-parallel training on two CPU processes, through the real CLI: Lightning's `ddp` launcher
starts the second rank by re-running the command line."""

from collections import Counter

import pytest
import torch

from tests.conftest import cli, one_line_error
from tests.helpers import meeting_port, metrics_rows
from tests.test_cli import VAELAB_TRAIN, run
from tests.test_resume import ROOT
from vaelab.data import DigitsDataModule
from vaelab.train import main as train_main

COMMON = [
    "model=ae",  # no sampling noise: one process and two must agree
    "trainer.max_epochs=1",
    "+trainer.val_check_interval=2",
    "callbacks.rich_progress_bar=null",
]


def first_val_recon(run_dir) -> float:
    return next(float(r["val/recon"]) for r in metrics_rows(run_dir) if r["val/recon"])


def assert_one_epoch_sharded(folder) -> None:
    """What two ranks trained on in one epoch of digits (RecordBatches' files in `folder`): each
    training example once across the ranks; 1437 % 2 = 1 left out of the epoch."""
    seen = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 718
    dm = DigitsDataModule()
    dm.setup()
    as_counts = lambda x: Counter(map(tuple, x.flatten(1).tolist()))  # noqa: E731
    seen_counts, train_counts = as_counts(torch.cat(seen)), as_counts(dm.splits["train"][0])
    assert seen_counts <= train_counts and (train_counts - seen_counts).total() == 1


def test_two_cpu_ranks_match_one_process_and_share_the_epoch(tmp_path, capfd, in_process):
    runs = {trainer: tmp_path / trainer for trainer in ("ddp_cpu", "cpu")}
    setting = {
        trainer: [*COMMON, f"trainer={trainer}", f"hydra.run.dir={run_dir}",
                  "+callbacks.record._target_=tests.helpers.RecordBatches",
                  f"+callbacks.record.folder={run_dir / 'seen'}"]
        for trainer, run_dir in runs.items()
    }  # fmt: skip
    # Two ranks: a process of its own, which Lightning's launcher runs again as rank 1.
    env = {"PYTHONPATH": str(ROOT), "MASTER_PORT": str(meeting_port())}
    result = run([VAELAB_TRAIN, *setting["ddp_cpu"]], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    code, err = cli(train_main, setting["cpu"], capfd)
    assert code == 0, err[-3000:]

    # Validation after two optimizer steps of the same global batch (128 = 2 x 64).
    assert first_val_recon(runs["ddp_cpu"]) == pytest.approx(first_val_recon(runs["cpu"]), abs=1e-4)

    assert_one_epoch_sharded(tmp_path / "ddp_cpu" / "seen")
    # Only rank zero wrote the run's files.
    assert not list(runs["ddp_cpu"].glob("rank1*")) and (runs["ddp_cpu"] / "results.json").is_file()


def test_ddp_inside_a_multirun_job_is_refused(tmp_path, capfd, in_process):
    args = ["-m", "trainer=ddp_cpu", "seed=1,2", f"hydra.sweep.dir={tmp_path}"]
    assert one_line_error(*cli(train_main, args, capfd)).startswith(
        "error: trainer.strategy=ddp cannot run inside a multirun job with this launcher"
    )
