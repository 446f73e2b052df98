"""Multiruns: launchers, the sweep summary, and failed jobs. The console script runs in this
process (its jobs where the launcher puts them), and in a process of its own where a SIGKILL is
the point."""

import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class

import vaelab
from tests.conftest import cli, run_here
from tests.helpers import metrics_rows
from tests.test_cli import VAELAB_TRAIN, run
from vaelab.config.presets import model_presets
from vaelab.errors import ConfigError
from vaelab.models import VAE, Model
from vaelab.train import main as train_main

QUICK = ["callbacks.rich_progress_bar=null", "trainer.accelerator=cpu"]


def sweep_here(capfd, *args: str) -> tuple[int, str]:
    """vaelab-train -m in this process (under `in_process`): its exit status and output."""
    return cli(train_main, ["-m", *QUICK, *args], capfd, both=True)


def test_beta_by_seed_with_joblib_writes_the_summary(tmp_path, capfd, in_process):
    sweep = tmp_path / "sweep"
    args = [
        "hydra/launcher=joblib",
        "model.beta=0.5,8",
        "seed=1,2",
        "data.batch_size=32",
        "trainer.max_epochs=6",
        f"hydra.sweep.dir={sweep}",
    ]
    code, out = sweep_here(capfd, *args)
    assert code == 0, out[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    summary = metrics_rows(sweep, "sweep.csv")
    assert [(r["model.beta"], r["seed"], r["status"]) for r in summary] == [
        ("0.5", "1", "COMPLETED"),
        ("0.5", "2", "COMPLETED"),
        ("8", "1", "COMPLETED"),
        ("8", "2", "COMPLETED"),
    ]
    kl = {
        beta: [float(r["test/kl"]) for r in summary if r["model.beta"] == beta]
        for beta in ("0.5", "8")
    }
    assert max(kl["8"]) < min(kl["0.5"])  # the KL falls as beta rises
    assert (sweep / "rate_distortion.png").stat().st_size > 1000
    # The console: Hydra's line per job start, one per job end, the summary's paths; the jobs'
    # own lines (epochs, tests) went to their train.log alone.
    lines = out.splitlines()
    for job in range(4):
        assert sum(f"#{job} : " in line for line in lines) == 1, out
        (end,) = [line for line in lines if f"#{job} COMPLETED · val/elbo -" in line]
        assert end.endswith(str(sweep / str(job)))
        assert "epoch 6/6" in (sweep / str(job) / "train.log").read_text()
    assert lines[-1].endswith(f"Sweep summary: sweep.csv, rate_distortion.png in {sweep}")
    assert len(lines) <= 4 * 2 + 4 and "epoch " not in out, out

    # The script rebuilds both files from the job directories.
    (sweep / "sweep.csv").unlink()
    (sweep / "rate_distortion.png").unlink()
    script = run_here(["vaelab.sweep", str(sweep)], tmp_path, capfd)  # python -m vaelab.sweep
    assert script.returncode == 0, script.stderr
    assert [r["test/kl"] for r in metrics_rows(sweep, "sweep.csv")] == [
        r["test/kl"] for r in summary
    ]
    assert (sweep / "rate_distortion.png").is_file()


def test_a_failed_job_is_recorded_and_raises(tmp_path, capfd, in_process):
    sweep = tmp_path / "sweep"
    args = ["model.latent_dim=0,2", "debug=fdr", f"hydra.sweep.dir={sweep}"]
    assert sweep_here(capfd, *args)[0] == 1
    (row, *_) = metrics_rows(sweep, "sweep.csv")
    assert row["status"] == "FAILED" and "model.latent_dim=0" in row["error"]


def test_submitit_local_runs_each_job_in_its_own_process(tmp_path, capfd, in_process):
    sweep = tmp_path / "sweep"
    args = [
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "debug=fdr",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    code, out = sweep_here(capfd, *args)
    assert code == 0, out[-3000:]
    assert [r["status"] for r in metrics_rows(sweep, "sweep.csv")] == ["COMPLETED", "COMPLETED"]
    assert all((sweep / job / "results.json").is_file() for job in ("0", "1"))


def test_an_interrupted_sweep_started_again_runs_only_its_unfinished_jobs(
    tmp_path, capfd, in_process
):
    """Job 1 is killed at step 15 (after its epoch-0 checkpoint); the same sweep started again
    in the same sweep dir keeps job 0 as it was and continues job 1 from its checkpoint."""
    sweep = tmp_path / "sweep"
    kill = ["+callbacks.kill._target_=tests.helpers.StopAt", "+callbacks.kill.by=SIGKILL"]
    common = [VAELAB_TRAIN, "-m", *QUICK, "trainer.max_epochs=2", f"hydra.sweep.dir={sweep}"]
    env = {"PYTHONPATH": str(Path(__file__).parents[1])}
    first = run([*common, *kill, "+callbacks.kill.step=1000,15"], cwd=tmp_path, env=env)
    assert first.returncode == -9  # killed mid-sweep
    done = (sweep / "0" / "results.json").read_bytes()
    assert not (sweep / "1" / "results.json").exists()

    code, log = sweep_here(capfd, *common[2:], *kill, "+callbacks.kill.step=1000,1001")
    assert code == 0, log[-3000:]
    assert (sweep / "0" / "results.json").read_bytes() == done  # not run again
    assert "finished in an earlier run of this sweep" in log
    assert "Continuing the unfinished job" in log
    steps = [int(r["step"]) for r in metrics_rows(sweep / "1") if r["val/elbo"]]
    assert steps == [11, 23]  # epoch 0 once, from the first run; epoch 1 after the restart
    assert [r["status"] for r in metrics_rows(sweep, "sweep.csv")] == ["COMPLETED", "COMPLETED"]


def test_a_sweep_stopped_by_sigterm_while_testing_is_finished_by_starting_it_again(
    tmp_path, capfd, in_process
):
    """SIGTERM while job 0 tests: the sweep stops there (exit 143; job 1 does not start), and the
    same command started again finishes job 0 from its checkpoint, then runs job 1."""
    sweep = tmp_path / "sweep"
    stop = ["+callbacks.stop._target_=tests.helpers.StopAt", "+callbacks.stop.step=0"]
    common = ["trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"]
    code, out = sweep_here(capfd, *common, *stop, "+callbacks.stop.stage=test,none")
    assert code == 143, out[-3000:]
    assert out.strip().splitlines()[-1] == (
        f"error: stopped by SIGTERM: finish the sweep by starting the same command again with "
        f"hydra.sweep.dir={sweep}"
    )
    assert not (sweep / "0" / "results.json").exists() and not (sweep / "1").exists()

    code, out = sweep_here(capfd, *common, *stop, "+callbacks.stop.stage=none,none")
    assert code == 0, out[-3000:]
    assert [r["status"] for r in metrics_rows(sweep, "sweep.csv")] == ["COMPLETED", "COMPLETED"]
    tested = [r["step"] for r in metrics_rows(sweep / "0") if r["test/elbo"]]
    assert tested == ["12"]  # tested once, after the restart


def test_every_model_preset_trains_through_the_cli_in_one_multirun_and_loads_back(
    tmp_path, capfd, in_process
):
    """Each preset a job of one multirun (one batch of each split); `vaelab.load` gives each
    run's model back, of its class, as does `Model.load_from_checkpoint`, also from a
    checkpoint moved away from its run; a class that did not write it says which did."""
    presets = sorted(model_presets())
    sweep = tmp_path / "sweep"
    one_batch = [f"trainer.{key}=1" for key in ("max_epochs", "limit_train_batches",
                 "limit_val_batches", "limit_test_batches")]  # fmt: skip
    args = [f"model={','.join(presets)}", *one_batch, "logger=none", f"hydra.sweep.dir={sweep}"]
    code, out = sweep_here(capfd, *args)
    assert code == 0, out[-3000:]
    summary = metrics_rows(sweep, "sweep.csv")
    assert [(r["model"], r["status"]) for r in summary] == [(p, "COMPLETED") for p in presets]
    assert all(float(r["test/loss"]) > 0 for r in summary)
    for job, preset in enumerate(presets):
        model = vaelab.load(sweep / str(job))
        assert type(model) is get_class(model_presets()[preset]) and not model.training
        best = sweep / str(job) / "checkpoints" / "best.ckpt"
        saved = torch.load(best, weights_only=False)["state_dict"]
        assert saved.keys() == model.state_dict().keys()
        for name, value in model.state_dict().items():
            torch.testing.assert_close(value, saved[name], msg=f"{preset}: {name}")
        moved = tmp_path / f"{preset}.ckpt"  # no config.yaml above it
        shutil.copy(best, moved)
        assert type(Model.load_from_checkpoint(moved)) is type(model)
    iwae = tmp_path / "iwae.ckpt"
    # vaelab 0.1's checkpoints name no class: the run's config.yaml above them does.
    old = torch.load(iwae, weights_only=False)
    del old["model_class"]
    torch.save(old, sweep / str(presets.index("iwae")) / "checkpoints" / "old.ckpt")
    old_model = Model.load_from_checkpoint(
        sweep / str(presets.index("iwae")) / "checkpoints" / "old.ckpt"
    )
    assert type(old_model).__name__ == "IWAE"
    with pytest.raises(ConfigError, match=r"iwae.ckpt is a checkpoint of IWAE, not of VAE: .*"):
        VAE.load_from_checkpoint(iwae)
