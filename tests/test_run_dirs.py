"""Run directories that survive kills, pre-emption, moves, copies and neighbours: every logged
step once, finishing idempotent, one process per directory, secrets masked. The console script
runs in this process, and in a process of its own where a SIGKILL is the point."""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import cli, console, console_here
from tests.helpers import Killed, metrics_rows
from tests.test_cli import VAELAB_TRAIN, run
from vaelab.errors import ConfigError
from vaelab.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
# Digits: 12 steps per epoch, 3 epochs; a training row every 3 steps; last.ckpt every 5 steps.
COMMON = [
    "callbacks.rich_progress_bar=null",
    "callbacks.images=null",
    "callbacks.last_checkpoint.every_n_train_steps=5",
    "trainer.log_every_n_steps=3",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=3",
]
STOP = "+callbacks.stop._target_=tests.helpers.StopAt"
# What differs between two runs of one setting that are not the same directory or invocation.
NOT_METRICS = ("command", "run_dir", "best_ckpt", "git_commit", "wandb_id")


def train(capfd, *args: str) -> tuple[int, str]:
    """vaelab-train in this process (under `in_process`): its exit status and what it printed."""
    flags = [a for a in args if a.startswith("-") and "=" not in a]  # -m before the overrides
    overrides = [a for a in args if a not in flags]
    return cli(train_main, [*flags, *COMMON, *overrides], capfd, both=True)


def stopped(step: int, by: str, stage: str = "train") -> list[str]:
    """The overrides that stop a run at `step` (see tests.helpers.StopAt)."""
    return [STOP, f"+callbacks.stop.step={step}", f"+callbacks.stop.by={by}",
            f"+callbacks.stop.stage={stage}"]  # fmt: skip


def sigkilled(cwd: Path, *args: str, step: int) -> None:
    """vaelab-train in a process of its own, ended by kill -9 after step `step`."""
    command = [VAELAB_TRAIN, *COMMON, *args, *stopped(step, "SIGKILL")]
    result = run(command, cwd=cwd, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == -9, result.stderr[-3000:]


def metrics(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in NOT_METRICS}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` by its relative path and content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextmanager
def held_elsewhere(run_dir: Path):
    """Another process holding `run_dir`'s lock while the block runs; SIGKILLed after it (no
    clean-up, and yet the lock goes with the process)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path; from vaelab.runs.lock "
         f"import RunDirLock; lock = RunDirLock(Path({str(run_dir)!r})); print('held', "
         "flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, cwd=run_dir.parent,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The run that never stopped: what every stopped and resumed run must equal."""
    tmp = tmp_path_factory.mktemp("straight")
    with console_here(tmp):
        assert console(train_main, [*COMMON, f"hydra.run.dir={tmp / 'run'}"]) == 0
    return tmp / "run"


def test_kills_and_sigterms_then_resumes_log_every_step_exactly_once(
    straight, tmp_path, capfd, in_process
):
    """kill -9 at step 8 (last.ckpt at 5: rows 5..8 were logged, some flushed), a crash at 19
    after a resume (every row to 19 flushed on the way out), SIGTERM at 30, then a resume to the
    end: metrics.csv is byte for byte the uninterrupted run's, as are the final metrics, and
    TensorBoard holds each step once."""
    run_dir = tmp_path / "run"
    sigkilled(tmp_path, f"hydra.run.dir={run_dir}", "logger=many", step=8)  # csv, tb, wandb
    with pytest.raises(Killed):
        train(capfd, f"resume={run_dir}", *stopped(19, "Killed"))
    code, out = train(capfd, f"resume={run_dir}", *stopped(30, "SIGTERM"))
    assert code == 143, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last == (
        f"error: stopped by SIGTERM ({run_dir}/checkpoints/last.ckpt holds it): continue the run "
        f"with vaelab-train resume={run_dir}"
    )
    code, out = train(capfd, f"resume={run_dir}", "+callbacks.stop=null")
    assert code == 0, out[-3000:]
    assert (run_dir / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    assert metrics(run_dir) == metrics(straight)

    # TensorBoard drops the events after each checkpoint that a resume started from.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(2, 36, 3))
    assert [e.step for e in events.Scalars("val/elbo")] == [11, 23, 35]


def test_epoch_means_stay_out_of_the_step_logs(straight):
    """One row per logged training step: the epoch means go to results.json only."""

    rows = [r for r in metrics_rows(straight) if r["train/loss"]]
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(2, 36, 3)) and len(set(steps)) == len(steps)
    assert "train/loss" in json.loads((straight / "results.json").read_text())


@pytest.mark.parametrize("stage", ["val", "test"])
def test_sigterm_in_validation_or_testing_is_finished_by_resume(
    straight, tmp_path, stage, capfd, in_process
):
    run_dir = tmp_path / "run"
    code, out = train(capfd, f"hydra.run.dir={run_dir}", *stopped(20, "SIGTERM", stage))
    assert code == 143 and "stopped by SIGTERM" in out.strip().splitlines()[-1], out[-3000:]
    assert not (run_dir / "results.json").exists()
    code, out = train(capfd, f"resume={run_dir}", "+callbacks.stop=null")
    assert code == 0, out[-3000:]
    assert (run_dir / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    assert metrics(run_dir) == metrics(straight)

    # Finished: a resume says so, writes nothing (no .hydra_resume_*, no test rows) and exits 0.
    before = snapshot(run_dir)
    code, out = train(capfd, f"resume={run_dir}")
    assert code == 0, out[-3000:]
    assert out.strip().splitlines()[-1].startswith(f"{run_dir} is finished: nothing to do")
    assert snapshot(run_dir) == before


@pytest.fixture
def ctrl_c():
    """Ctrl-C reaches Python as at a terminal: a suite started in the background (`make test &`)
    inherits SIGINT ignored, and the run would never see it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_testing_is_finished_by_resume(straight, tmp_path, capfd, in_process, ctrl_c):
    run_dir = tmp_path / "run"
    code, out = train(capfd, f"hydra.run.dir={run_dir}", *stopped(0, "SIGINT", "test"))
    assert code == 1 and not (run_dir / "results.json").exists(), out[-3000:]
    code, out = train(capfd, f"resume={run_dir}", "+callbacks.stop=null")
    assert code == 0, out[-3000:]
    assert metrics(run_dir) == metrics(straight)


def test_moved_and_copied_runs_resume_where_they_are(straight, tmp_path, capfd, in_process):
    # Stopped while testing: the copy's resume trains nothing, so every checkpoint path it
    # uses comes from the checkpoint it restores, which names the original's folder.
    tested = tmp_path / "tested"
    code, out = train(capfd, f"hydra.run.dir={tested}", *stopped(0, "SIGTERM", "test"))
    assert code == 143, out[-3000:]
    copy = tmp_path / "copy"
    shutil.copytree(tested, copy, symlinks=True)
    original = snapshot(tested)
    code, out = train(capfd, f"resume={copy}", "+callbacks.stop=null")
    assert code == 0, out[-3000:]
    assert snapshot(tested) == original  # the copy read and wrote only itself
    assert metrics(copy) == metrics(straight)
    assert json.loads((copy / "results.json").read_text())["best_ckpt"].startswith(f"{copy}/")

    first = tmp_path / "first"
    with pytest.raises(Killed):
        train(capfd, f"hydra.run.dir={first}", *stopped(20, "Killed"))

    moved = tmp_path / "moved"
    first.rename(moved)
    elsewhere = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("moved/")}
    code, out = train(capfd, "resume=moved", "+callbacks.stop=null")  # relative, too
    assert code == 0, out[-3000:]
    assert not first.exists()
    # Every file the resume wrote is inside the moved directory.
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("moved/")} == elsewhere
    assert metrics(moved) == metrics(straight)
    results = json.loads((moved / "results.json").read_text())
    assert results["run_dir"] == str(moved) and results["best_ckpt"].startswith(f"{moved}/")
    assert str(first) not in (moved / "config.yaml").read_text()

    # A finished run moved again: its results name where it is now.
    again = tmp_path / "again"
    moved.rename(again)
    code, out = train(capfd, f"resume={again}")
    assert code == 0 and "is finished" in out, out[-3000:]
    assert json.loads((again / "results.json").read_text())["run_dir"] == str(again)


def test_one_process_per_run_directory(tmp_path, capfd, in_process):
    run_dir = tmp_path / "run"
    with held_elsewhere(run_dir):
        before = snapshot(run_dir)
        code, out = train(capfd, f"hydra.run.dir={run_dir}", "debug=fdr")
        assert code == 1, out[-3000:]
        assert out.strip().splitlines()[-1] == (
            f"error: {run_dir} is in use by another vaelab process: wait for it to end, or "
            f"give this run another hydra.run.dir"
        )
        assert snapshot(run_dir) == before  # nothing written: no .hydra/, no log
    code, out = train(capfd, f"hydra.run.dir={run_dir}", "debug=fdr")
    assert code == 0, out[-3000:]

    # A fresh run into a directory that holds a run is refused; resume= continues it.
    before = snapshot(run_dir)
    code, out = train(capfd, f"hydra.run.dir={run_dir}", "debug=fdr")
    assert code == 1
    assert out.strip().splitlines()[-1] == (
        f"error: {run_dir} already holds a run: continue it with resume={run_dir}, or give a "
        f"new hydra.run.dir (output_dir in Python)"
    )
    assert snapshot(run_dir) == before


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, capfd, in_process):
    """The default run and sweep folders are named by the second; two runs started in one second
    (a loop in Python, two commands started at once) each get one, made as it is named
    (`${new_dir:}`), the later with _1; a resume makes none."""
    from vaelab import compose
    from vaelab.train import train as train_here

    logs = ["debug=fdr", "trainer=cpu", f"paths.log_dir={tmp_path / 'logs'}"]
    runs = [Path(train_here(compose(*logs))[0]["run_dir"]) for _ in range(3)]  # none refused
    assert len(set(runs)) == 3
    # The mechanism, on one name: each folder is made once, whoever asks first gets it.
    same = ["debug=fdr", "trainer=cpu", f"hydra.run.dir=${{new_dir:{tmp_path / 'same'}}}"]
    dirs = [compose(*same).paths.output_dir for _ in range(2)]
    assert dirs == [str(tmp_path / "same"), str(tmp_path / "same_1")]
    for cfg_dir in dirs:
        code, out = train(capfd, f"hydra.run.dir={cfg_dir}", "debug=fdr")
        assert code == 0, out[-3000:]
    # A command or a compose refused leaves no folder behind (nor the parents it made).
    refused = [f"paths.log_dir={tmp_path / 'refused'}", "model.beta=-1"]
    assert cli(train_main, refused, capfd)[0] == 1
    with pytest.raises(ConfigError):
        compose(*refused)
    assert not (tmp_path / "refused").exists()
    # Sweeps alike; and a resume runs in its own folder, making no other.
    code, out = train(capfd, "-m", "debug=fdr", "seed=1,2", f"paths.log_dir={tmp_path / 'logs'}")
    assert code == 0, out[-3000:]
    before = sorted(p.name for p in (tmp_path / "logs" / "debug" / "runs").iterdir())
    resumed = compose(*logs, f"resume={runs[0]}").paths.output_dir
    assert resumed == str(runs[0])
    assert sorted(p.name for p in (tmp_path / "logs" / "debug" / "runs").iterdir()) == before
    assert len(list((tmp_path / "logs" / "debug" / "multiruns").iterdir())) == 1


def test_secrets_are_masked_by_name_and_by_value_in_a_sweep(tmp_path, capfd, in_process):
    """Key names with key/token/secret/password/credential/auth; a value with a comma; a secret
    interpolated into a URL; all in a multirun with W&B: no file of the sweep holds one, and
    neither does what the command printed."""
    sweep = tmp_path / "sweep"
    secrets = {"api": "abc,def123", "token": "tok-98765", "cred": "pa55-word"}
    args = [
        "-m",
        "debug=fdr",
        "logger=wandb",
        f"+service.wandb_key='{secrets['api']}'",
        f"+service.Auth_Token={secrets['token']}",
        f"+credentials={secrets['cred']}",
        "+service.url=https://user:${credentials}@host/db",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    code, out = train(capfd, *args)
    assert code == 0, out[-3000:]
    assert (sweep / "sweep.csv").is_file() and (sweep / "multirun.yaml").is_file()
    leaked = [
        (str(p.relative_to(sweep)), name)
        for p in sweep.rglob("*")
        if p.is_file()
        for name, value in secrets.items()
        if value.encode() in p.read_bytes()
    ]
    assert leaked == []
    assert not any(value in out for value in secrets.values())
    config = (sweep / "0" / "config.yaml").read_text()
    assert "url: https://user:***@host/db" in config and "wandb_key: '***'" in config


def test_a_slurm_preemption_and_requeue_continue_the_run(
    straight, tmp_path, capfd, in_process, monkeypatch, caplog
):
    """SLURM as Lightning sees it (its variables set): SIGUSR1 before the time limit makes
    Lightning write hpc_ckpt_1.ckpt and call `scontrol requeue` (which fails: there is no job
    4242), SIGTERM then stops the job (exit 143), and the requeued job, the same command with
    SLURM_RESTART_COUNT=1, continues the run in its directory to the uninterrupted result."""
    run_dir = tmp_path / "run"
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "vaelab",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NNODES": "1",
             "SLURM_NODELIST": "localhost", "SLURM_NTASKS_PER_NODE": "1"}  # fmt: skip
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    usr1 = ["+callbacks.usr1._target_=tests.helpers.StopAt", "+callbacks.usr1.step=17",
            "+callbacks.usr1.by=SIGUSR1"]  # fmt: skip
    term = ["+callbacks.term._target_=tests.helpers.StopAt", "+callbacks.term.step=21"]
    code, out = train(capfd, f"hydra.run.dir={run_dir}", *usr1, *term)
    assert code == 143, out[-3000:]
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file()
    assert "Requeuing SLURM job 4242 failed" in caplog.text  # Lightning's logger

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    code, out = train(
        capfd, f"hydra.run.dir={run_dir}", "+callbacks.usr1=null", "+callbacks.term=null"
    )
    assert code == 0, out[-3000:]
    assert (run_dir / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    assert metrics(run_dir) == metrics(straight)
