"""Two "nodes" of one CPU process each, on this machine, started as a cluster starts them: the same
command on each, with Lightning's multi-node variables (MASTER_ADDR, MASTER_PORT, NODE_RANK,
LOCAL_RANK) and trainer.num_nodes=2, over gloo. One run, sharded across the nodes, its metrics
reduced, in one run directory; stopped, resumed, and the same as the run that never stopped."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.helpers import assert_same_run, last_step, meeting_port
from tests.test_cli import VAELAB_TRAIN
from tests.test_ddp import assert_one_epoch_sharded, first_val_recon
from tests.test_resume import ROOT
from vaelab.train import main as train_main

NODES = [
    "trainer=ddp_cpu",
    "trainer.devices=1",
    "trainer.num_nodes=2",
    "model=ae",  # no sampling noise: one process and two nodes must agree
    "+trainer.val_check_interval=2",
    "callbacks.rich_progress_bar=null",
]


def two_nodes(tmp: Path, *args: str) -> list[str]:
    """The same command on node 0 and node 1; each one's output. Both must succeed."""
    port = str(meeting_port())
    quiet = ("HYDRA_FULL_ERROR", "VAELAB_TRACEBACKS")  # a developer's, not the commands'
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    env |= {"WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port, "LOCAL_RANK": "0"}  # fmt: skip
    logs = [tmp / f"node{rank}.out" for rank in (0, 1)]
    processes = [
        subprocess.Popen(
            [VAELAB_TRAIN, *NODES, *args],
            cwd=tmp,
            env=env | {"NODE_RANK": str(rank)},
            stdout=open(log, "w"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
        )
        for rank, log in enumerate(logs)
    ]
    try:
        codes = [process.wait(timeout=300) for process in processes]
    finally:  # a node that failed leaves the other waiting for it (torch's timeout is 30 min)
        for process in processes:
            process.kill()
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(out[-3000:] for out in outputs)
    return outputs


def test_two_nodes_train_one_run_and_resume_it(tmp_path, capfd, in_process):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    two_nodes(tmp_path, "trainer.max_epochs=2", f"hydra.run.dir={straight}")

    record = ["+callbacks.record._target_=tests.helpers.RecordBatches",
              f"+callbacks.record.folder={tmp_path / 'seen'}"]  # fmt: skip
    outputs = two_nodes(tmp_path, "trainer.max_epochs=1", f"hydra.run.dir={stopped}", *record)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    assert outputs[0].count(f"Run {stopped}") == 1 and f"Run {stopped}" not in outputs[1]

    assert_one_epoch_sharded(tmp_path / "seen")  # each example of the epoch on one node only

    # One run directory: rank zero's files once; node 1's Hydra records and log beside them.
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (stopped / "config.yaml").is_file() and (stopped / "results.json").is_file()
    assert (stopped / ".hydra_node1" / "overrides.yaml").is_file()
    assert "NODE_RANK" not in (stopped / "train.log").read_text()
    assert (stopped / "train.node1.log").is_file()

    # Resumed on both nodes: the weights of the run that never stopped.
    two_nodes(tmp_path, f"resume={stopped}", "trainer.max_epochs=2", "+callbacks.record=null")
    assert_same_run(stopped, straight, rows=False)
    assert last_step(stopped) == 2 * 12  # 12 steps of 2 x 64 examples per epoch

    # Metrics reduced across the nodes: the validation after two steps is that of one process
    # taking the same two steps of the global batch (128 = 2 x 64).
    one = tmp_path / "one"  # in this process: the command is not the point here
    code, err = cli(train_main, [*NODES[3:], "trainer=cpu", "trainer.max_epochs=1",
                                 f"hydra.run.dir={one}"], capfd)  # fmt: skip
    assert code == 0, err[-3000:]
    assert first_val_recon(stopped) == pytest.approx(first_val_recon(one), abs=1e-4)
