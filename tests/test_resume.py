"""Stop a run anywhere, resume it, and get the weights of the run that never stopped."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import cli, console, console_here
from tests.helpers import assert_same_run, metrics_rows
from tests.test_cli import VAELAB_TRAIN, assert_quiet, run
from tests.wandb_records import run_contents
from vaelab.errors import DataError
from vaelab.runs.resume import newest_checkpoint
from vaelab.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
# Digits: 12 steps per epoch; last.ckpt also every 5 steps; W&B offline; no progress bar.
COMMON = [
    "callbacks.rich_progress_bar=null",
    "callbacks.last_checkpoint.every_n_train_steps=5",
    "logger=many",
    "trainer.accelerator=cpu",
]


def train(capfd, *args: str) -> tuple[int, str]:
    """vaelab-train in this process (under `in_process`): its exit status and what it printed."""
    return cli(train_main, [*COMMON, *args], capfd, both=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """Four epochs without a stop, one optimizer step per Lightning step: what every resumed run
    (of the default settings: several steps per call) must reproduce bit for bit."""
    tmp = tmp_path_factory.mktemp("straight")
    args = ["trainer.max_epochs=4", "trainer.steps_per_call=1", f"hydra.run.dir={tmp / 'run'}"]
    with console_here(tmp):
        assert console(train_main, [*COMMON, *args]) == 0
    return tmp / "run"


def test_resume_at_an_epoch_boundary_is_exact(straight, tmp_path, capfd, in_process):
    run_dir = tmp_path / "run"
    code, out = train(capfd, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert code == 0, out[-3000:]
    first_id = (run_dir / "wandb_id").read_text().strip()
    (original_hydra,) = [p.read_text() for p in (run_dir / ".hydra").glob("overrides.yaml")]

    code, out = train(capfd, f"resume={run_dir}", "trainer.max_epochs=4")
    assert code == 0, out[-3000:]
    assert_same_run(run_dir, straight, rows=False)
    assert_quiet(out)  # no "checkpoint directory not empty", no tips

    # Hydra's record of the resume sits beside the original, which is untouched.
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == original_hydra
    assert len(list(run_dir.glob(".hydra_resume_*/overrides.yaml"))) == 1
    # metrics.csv holds both halves; the step count continues.
    val_steps = [int(r["step"]) for r in metrics_rows(run_dir) if r["val/elbo"]]
    assert val_steps == [11, 23, 35, 47]
    # The same W&B run continues, and its global step with it.
    results = json.loads((run_dir / "results.json").read_text())
    assert results["wandb_id"] == first_id
    runs = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(first_id) for p in runs)
    steps = []
    for one in runs:
        shutil.move(str(one), str(tmp_path / one.name))
    for one in runs:
        solo = tmp_path / f"solo-{one.name}"
        (solo / "wandb").mkdir(parents=True)
        shutil.move(str(tmp_path / one.name), str(solo / "wandb" / one.name))
        contents = run_contents(solo)
        assert contents["id"] == first_id
        steps.append(
            [row["trainer/global_step"] for row in contents["history"] if "val/elbo" in row]
        )
    assert steps == [[11, 23], [35, 47]]
    # And the same MLflow run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert mlflow_run.info.run_id == (run_dir / "mlflow_id").read_text().strip()
    history = client.get_metric_history(mlflow_run.info.run_id, "val/elbo")
    assert [m.step for m in history] == [11, 23, 35, 47]


def test_resume_after_sigkill_mid_epoch_is_exact(straight, tmp_path, capfd, in_process):
    run_dir = tmp_path / "run"
    kill = ["+callbacks.kill._target_=tests.helpers.StopAt", "+callbacks.kill.step=33",
            "+callbacks.kill.by=SIGKILL"]  # fmt: skip
    command = [VAELAB_TRAIN, *COMMON, "trainer.max_epochs=4", f"hydra.run.dir={run_dir}", *kill]
    killed = run(command, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9, killed.stderr[-3000:]  # kill -9: no clean-up
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 30  # mid-epoch: epoch 2 runs steps 24..35
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 2, "taken": 6}
    ]

    code, out = train(capfd, f"resume={run_dir}", "+callbacks.kill=null")
    assert code == 0, out[-3000:]
    assert_same_run(run_dir, straight, rows=False)
    val_steps = [int(r["step"]) for r in metrics_rows(run_dir) if r["val/elbo"]]
    assert val_steps == [11, 23, 35, 47]


def test_truncated_checkpoint_falls_back_and_names_the_file(tmp_path, capfd, in_process):
    run_dir = tmp_path / "run"
    code, out = train(capfd, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert code == 0, out[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])

    code, out = train(capfd, f"resume={run_dir}", "trainer.max_epochs=3")
    assert code == 0, out[-3000:]
    assert f"Skipping unreadable checkpoints: {last}" in out
    assert "Resuming from" in out and "best.ckpt" in out
    assert torch.load(last, weights_only=True)["global_step"] == 36


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert newest_checkpoint(tmp_path) is None  # nothing yet: a clean start
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=f"no checkpoint of {tmp_path} can be read: {folder}"):
        newest_checkpoint(tmp_path)


def test_resume_refuses_changes_to_the_model_and_starts_clean_without_checkpoint(
    tmp_path, capfd, in_process
):
    run_dir = tmp_path / "run"
    code, out = train(capfd, "model.beta=2", "debug=fdr", "logger=csv", f"hydra.run.dir={run_dir}")
    assert code == 0, out[-3000:]
    # As if stopped before the first checkpoint (a fast dev run writes none) and its results.
    assert not (run_dir / "checkpoints").exists()
    (run_dir / "results.json").unlink()
    code, out = train(capfd, f"resume={run_dir}", "model.latent_dim=3", "logger=csv")
    assert code == 1
    assert out.strip().splitlines()[-1] == (
        f"error: resume={run_dir} cannot change model.latent_dim (8 in the run, 3 now): these "
        "alter the model, the data or the optimisation; start a new run instead"
    )
    code, out = train(capfd, f"resume={run_dir}", "logger=csv", "trainer.max_epochs=1")
    assert code == 0, out[-3000:]
    assert "No checkpoint in" in out and "starting the run from the beginning" in out
    config = (run_dir / "config.yaml").read_text()
    assert "beta: 2\n" in config and "max_epochs: 1" in config  # the run's beta, the new limit
