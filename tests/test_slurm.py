"""vaelab on a real SLURM cluster: one node with accounting (slurmctld, slurmd, slurmdbd, MariaDB,
munge), started on 127.0.0.1 by scripts/slurm_cluster.sh for this module and stopped by the PIDs
it recorded. The sweep command runs in this process (`run_here`), its jobs as SLURM starts them.
Needs root and Debian's packages (.ci/run installs them); a developer's machine without them
skips these tests, CI never does."""

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import one_line_error, run_here
from tests.helpers import assert_same_run, metrics_rows
from tests.test_cli import VAELAB_TRAIN

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
# What the launcher asks SLURM for, sized to this node (its preset asks for a GPU and 8 CPUs).
ON_THIS_NODE = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                "trainer.accelerator=cpu", "callbacks.rich_progress_bar=null"]  # fmt: skip


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the cluster's daemons run as root"
    needed = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
    absent = [name for name in needed if shutil.which(name) is None]
    if absent:
        return f"{', '.join(absent)} missing: apt-get install slurmctld slurmd slurm-client " \
            "slurmdbd munge mariadb-server"  # fmt: skip
    return None


@pytest.fixture(scope="module")
def cluster():
    """SLURM_CONF of a running cluster; its ports apart for each xdist worker."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests: {reason}")
        pytest.skip(reason)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    folder = Path(tempfile.mkdtemp(prefix="vaelab-slurm-", dir="/tmp"))  # munge must reach it
    folder.chmod(0o755)
    port = 16817 + 10 * worker  # the cluster takes 4 from here, the MLflow server the 6th
    env = {**os.environ, "VAELAB_SLURM_PORT": str(port)}
    started = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], env=env,
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        optuna_db, mlflow_db = re.findall(r"mysql\+pymysql://[^\s,]+", started.stdout)
        yield {"SLURM_CONF": str(folder / "slurm.conf"), "VAELAB_TEST_OPTUNA_DB": optuna_db,
               "VAELAB_TEST_MLFLOW_DB": mlflow_db, "VAELAB_TEST_PORT": str(port + 5)}  # fmt: skip
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def slurm(cluster, *command: str, check: bool = True) -> str:
    """What a SLURM command (sacct, squeue, scontrol) prints about this cluster."""
    env = {**os.environ, **cluster}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=check).stdout


def sacct(cluster, *args: str) -> list[list[str]]:
    """sacct's rows, parsable, for every job of the cluster."""
    out = slurm(cluster, "sacct", "-a", "-n", "-P", "-X", *args)
    return [line.split("|") for line in out.splitlines()]


def ended(cluster, ids: list[str], within_s: float = 60) -> list[str]:
    """The final states of jobs `ids`, once accounting has them: the launcher returns as soon as
    a job's result is written, a moment before its process and step end."""
    deadline = time.monotonic() + within_s
    while True:
        states = dict(sacct(cluster, "-o", "JobID,State"))
        found = [states.get(i, "") for i in ids]
        if all(s and s not in ("PENDING", "RUNNING", "COMPLETING") for s in found):
            return found
        assert time.monotonic() < deadline, f"jobs {ids} still {found} after {within_s} s"
        time.sleep(0.2)


def array_tasks(sweep: Path) -> list[str]:
    """The SLURM ids of a sweep's jobs (6_0, 6_1, ...), from submitit's folders."""
    return sorted(
        p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)
    )


def test_a_job_requeued_while_training_finishes_as_if_it_never_stopped(cluster, tmp_path, capfd):
    """Two identical jobs; job 0 is requeued at step 20 (SIGTERM from SLURM, last.ckpt saved,
    the job started again by the cluster): it ends with job 1's weights and metrics.csv."""
    sweep = tmp_path / "sweep"
    args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "trainer.max_epochs=3", "seed=7",
            "+callbacks.requeue._target_=tests.helpers.Requeue",
            "+callbacks.requeue.step=20,100000", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    released, _ = sweep_with_requeues(cluster, args, tmp_path, capfd)
    assert released
    log = (sweep / "0" / "train.log").read_text()
    assert (
        log.count("Resuming from") == 1
        and "Resuming from" not in (sweep / "1" / "train.log").read_text()
    )
    assert_same_run(sweep / "0", sweep / "1")  # the weights at the same step, every row once
    rows = metrics_rows(sweep, "sweep.csv")
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]


def sweep_with_requeues(cluster, args: list[str], cwd: Path, capfd) -> tuple[int, str]:
    """Run a sweep whose jobs SLURM requeues, starting each requeued job at once; (releases, what
    the sweep printed). The sweep waits for its jobs through their requeues (SLURM shows a state
    for a moment then that submitit alone would take as their end)."""
    done, released = threading.Event(), []
    releasing = threading.Thread(target=release_when_requeued, args=(cluster, done, released))
    releasing.start()
    try:
        result = run_here(args, cwd, capfd, env={"PYTHONPATH": str(ROOT), **cluster})
    finally:
        done.set()
        releasing.join()
    assert "timed out" not in released, "the sweep had not ended in 300 s: its jobs were cancelled"
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return len(released), result.stdout + result.stderr


def release_when_requeued(cluster, done: threading.Event, released: list[str]) -> None:
    """Start each requeued job now, not at the BeginTime (~2 min on) SLURM gives it, until
    `done`; each job released is added to `released`. After 300 s, cancels every job (the
    sweep then ends) and adds "timed out"."""
    deadline = time.monotonic() + 300
    while not done.wait(0.5):
        if time.monotonic() > deadline:
            jobs = slurm(cluster, "squeue", "-h", "-o", "%i").split()
            slurm(cluster, "scancel", "--full", *jobs, check=False)
            released.append("timed out")
            return
        for line in slurm(cluster, "squeue", "-h", "-o", "%i %t %r").splitlines():
            if line.endswith("BeginTime"):
                job_id = line.split()[0]
                # The job may have started meanwhile: then there is nothing to release.
                slurm(
                    cluster, "scontrol", "update", f"JobId={job_id}", "StartTime=now", check=False
                )
                released.append(job_id)


def test_a_job_that_reaches_its_time_limit_is_requeued_and_finishes(cluster, tmp_path, capfd):
    """A 1-minute limit, the signal 40 s ahead. The job's first run holds after step 30 (past
    epoch 2's checkpoint) until SIGUSR2 comes (SLURM sends it up to half a minute off): submitit
    requeues the job (max_num_timeout), and the next run continues from the newest checkpoint to
    the end, every step logged once. The run is short (4 epochs): a requeued run finishes well
    within its own minute also on a loaded machine, instead of timing out again."""
    sweep = tmp_path / "sweep"
    args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "hydra.launcher.timeout_min=1",
            "hydra.launcher.signal_delay_s=40", "trainer.max_epochs=4", "logger=csv", "seed=1",
            "+callbacks.hold._target_=tests.helpers.HoldUntilStopped", "+callbacks.hold.step=30",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    released, _ = sweep_with_requeues(cluster, args, tmp_path, capfd)
    assert released >= 1
    logs = [log.read_text() for log in (sweep / ".submitit").glob("*/*_0_log.out")]
    assert any("Job has timed out" in log for log in logs)
    steps = [int(r["step"]) for r in metrics_rows(sweep / "0") if r["val/elbo"]]
    assert steps == [12 * epoch - 1 for epoch in range(1, 5)]
    assert metrics_rows(sweep, "sweep.csv")[0]["status"] == "COMPLETED"


def test_a_job_cancelled_while_testing_is_finished_by_the_same_command(cluster, tmp_path, capfd):
    """Two identical jobs; job 0 is cancelled (`scancel`) in its test stage, which ends the
    sweep with a one-line error; the same command started again tests job 0 from its checkpoint
    and keeps job 1's results: both end as one uninterrupted run."""
    sweep = tmp_path / "sweep"
    args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "trainer.max_epochs=2", "seed=7",
            "+callbacks.cancel._target_=tests.helpers.Cancel",
            "+callbacks.cancel.batch=0,100000", f"+callbacks.cancel.flag={tmp_path / 'cancelled'}",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), **cluster}
    first = run_here(args, tmp_path, capfd, env=env)
    # The sweep waited for job 1, then said in one line what did not finish and what to do.
    message = one_line_error(first.returncode, first.stderr)
    assert (tmp_path / "cancelled").exists()
    assert "1 of 2 jobs did not finish: job 0 (SLURM job " in message
    assert "ended CANCELLED without a result (stopped by SIGTERM" in message
    assert "Start the same command again to finish the sweep" in message
    assert not (sweep / "0" / "results.json").exists() and (sweep / "1" / "results.json").exists()
    assert [state.split()[0] for state in ended(cluster, array_tasks(sweep))] == [
        "CANCELLED",
        "COMPLETED",
    ]

    again = run_here(args, tmp_path, capfd, env=env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "finished in an earlier run of this sweep" in (sweep / "1" / "train.log").read_text()
    assert_same_run(sweep / "0", sweep / "1")
    tested = [json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1")]
    assert {k: v for k, v in tested[0].items() if k.startswith("test/")} == {
        k: v for k, v in tested[1].items() if k.startswith("test/")
    }
    assert [r["status"] for r in metrics_rows(sweep, "sweep.csv")] == ["COMPLETED", "COMPLETED"]


def test_a_ddp_job_of_two_tasks_is_one_run_and_survives_a_requeue(cluster, tmp_path, capfd):
    """`trainer=ddp_cpu` as SLURM jobs of two tasks: Lightning takes the ranks from SLURM's
    variables, rank zero alone writes the one run directory. Job 0 is requeued at step 14 (after
    the first epoch's checkpoint) and ends as its uninterrupted twin, job 1, bit for bit."""
    # The ranks meet at the node SLURM names (the machine's own name): it must resolve.
    socket.gethostbyname(socket.gethostname())
    sweep = tmp_path / "sweep"
    args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "hydra.launcher.tasks_per_node=2", "trainer=ddp_cpu",
            "model=ae", "trainer.max_epochs=4", "seed=7",
            "+callbacks.requeue._target_=tests.helpers.Requeue",
            "+callbacks.requeue.step=14,100000", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    released, _ = sweep_with_requeues(cluster, args, tmp_path, capfd)
    assert released
    for job in array_tasks(sweep):  # each task a rank of two, from SLURM_PROCID and SLURM_NTASKS
        logs = sorted((sweep / ".submitit" / job).glob("*_log.out"))
        ranks = {
            re.search(r"GLOBAL_RANK: (\d), MEMBER: \d/2", log.read_text()).group(1) for log in logs
        }
        assert ranks == {"0", "1"}, job
    assert (sweep / "0" / "train.log").read_text().count("Resuming from") == 1
    assert_same_run(sweep / "0", sweep / "1")
    for job in ("0", "1"):  # task 1 keeps its records and log beside the run's
        assert sorted(p.name for p in (sweep / job).iterdir()) == [
            ".hydra", ".hydra_task1", ".vaelab.lock", "checkpoints", "config.yaml", "hparams.yaml",
            "images", "metrics.csv", "results.json", "train.log", "train.task1.log"]  # fmt: skip


def test_workers_on_slurm_share_one_study_in_mariadb_and_a_killed_trial_is_run_again(
    cluster, tmp_path, capfd
):
    """Two search workers (a sweep over seed=1,2, one SLURM job each) on one Optuna study in
    MariaDB. The first trial to reach step 5 is killed with its worker (kill -9): its heartbeat
    stops, the other worker fails it and runs it again with the same values, and the study ends
    with exactly n_trials finished trials."""
    import optuna

    sweep, url, n_trials = tmp_path / "sweep", cluster["VAELAB_TEST_OPTUNA_DB"], 5
    args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "hparams_search=vae_optuna",
            f"hparams_search.storage={url}", "hparams_search.study_name=shared",
            f"hparams_search.n_trials={n_trials}", "hparams_search.heartbeat_interval=1",
            "hparams_search.grace_period=4", "hparams_search.pruner.n_startup_trials=10",
            "trainer.max_epochs=2", "+callbacks.kill._target_=tests.helpers.StopAt",
            "+callbacks.kill.step=5", "+callbacks.kill.by=SIGKILL",
            f"+callbacks.kill.flag={tmp_path / 'killed'}", "seed=1,2",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    result = run_here(args, tmp_path, capfd, env={"PYTHONPATH": str(ROOT), **cluster})
    # The killed worker's job did not finish; the sweep waited for the other, which did.
    message = one_line_error(result.returncode, result.stderr)
    assert "1 of 2 jobs did not finish" in message and "ended FAILED" in message

    study = optuna.load_study(study_name="shared", storage=url)
    states = [t.state.name for t in study.trials]
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == n_trials and states.count("FAIL") == 1, states
    (killed,) = [t for t in study.trials if t.state.name == "FAIL"]
    (retry,) = [t for t in finished if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params
    # Each finished trial trained in its own directory, under the worker that ran it.
    done = sorted(p.parent.name for p in sweep.glob("*/trial_*/results.json"))
    assert done == sorted(f"trial_{t.number:03d}" for t in finished)


@contextlib.contextmanager
def mlflow_server(cluster, artifacts: Path):
    """An MLflow tracking server on MariaDB (its store) and `artifacts` (a folder it serves), on
    127.0.0.1; its URL. Stopped at the end with every process it started (its own group)."""
    port = cluster["VAELAB_TEST_PORT"]
    server = subprocess.Popen(
        [str(Path(VAELAB_TRAIN).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", port, "--workers", "1", "--backend-store-uri", cluster["VAELAB_TEST_MLFLOW_DB"],
         "--artifacts-destination", str(artifacts)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # without the job runner MLflow starts beside it (5 processes), which vaelab never uses
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the MLflow server did not answer in 90 s"
            time.sleep(0.5)
        yield url, server
    finally:
        stop_group(server)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group `process` leads (it was started in a session of its own),
    SIGKILL to what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # its workers, if the leader went first
        os.killpg(process.pid, signal.SIGKILL)


def test_a_sweep_runs_each_job_as_a_slurm_job_and_they_log_to_one_mlflow_server(
    cluster, tmp_path, capfd
):
    """Each job of a sweep is a SLURM job (an array of two) that writes the directory a local
    run writes; the two, running at once, log to an MLflow server (MariaDB store, artifacts on
    disk): each run reads back with its params, every epoch's metrics, the sweep's tag and its
    pictures."""
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep"
    with mlflow_server(cluster, tmp_path / "artifacts") as (url, _):
        args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "logger=[csv,mlflow]",
                f"logger.mlflow.tracking_uri={url}", "trainer.max_epochs=3", "model.beta=0.5,4",
                f"hydra.sweep.dir={sweep}"]  # fmt: skip
        result = run_here(args, tmp_path, capfd, env=cluster)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        rows = metrics_rows(sweep, "sweep.csv")
        assert [(r["job"], r["model.beta"], r["status"]) for r in rows] == [
            ("0", "0.5", "COMPLETED"),
            ("1", "4", "COMPLETED"),
        ]
        assert (sweep / "rate_distortion.png").stat().st_size > 1000
        for job in ("0", "1"):  # each job's directory as a local run's
            for name in ("config.yaml", "metrics.csv", "results.json", "train.log"):
                assert (sweep / job / name).is_file(), (job, name)
        # Accounting saw each job end.
        assert ended(cluster, array_tasks(sweep)) == ["COMPLETED", "COMPLETED"]
        client = MlflowClient(url)
        runs = {}
        for job in ("0", "1"):
            run_id = (sweep / job / "mlflow_id").read_text().strip()
            runs[job] = client.get_run(run_id)
            assert runs[job].info.status == "FINISHED"
            assert runs[job].data.params["model/beta"] == {"0": "0.5", "1": "4"}[job]
            history = client.get_metric_history(run_id, "val/loss")
            rows = [r for r in metrics_rows(sweep / job) if r["val/loss"]]
            assert [(m.step, m.value) for m in history] == [
                (int(r["step"]), pytest.approx(float(r["val/loss"]))) for r in rows
            ]
            stored = {a.path for a in client.list_artifacts(run_id)}
            assert {"config.yaml", "results.json", "images"} <= stored
            assert client.list_artifacts(run_id, "images")
        tags = {job: r.data.tags["vaelab.sweep"] for job, r in runs.items()}
        assert tags["0"] == tags["1"]
        # The two jobs ran at the same time on the node's two CPUs.
        starts = [r.info.start_time for r in runs.values()]
        ends = [r.info.end_time for r in runs.values()]
        assert max(starts) < min(ends)


def test_an_mlflow_server_that_goes_away_mid_run_costs_a_warning_not_the_run(
    cluster, tmp_path, compose_train, caplog
):
    """The server is killed in epoch 2 of 4: one warning, the run finishes whole on disk, and the
    server, started again, has what was logged before it went."""
    from mlflow.tracking import MlflowClient

    from tests.helpers import StopServer
    from vaelab.train import train

    artifacts = tmp_path / "artifacts"
    with mlflow_server(cluster, artifacts) as (url, server):
        cfg = compose_train("logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={url}",
                            "trainer.max_epochs=4", "callbacks.images=null")  # fmt: skip
        with caplog.at_level(logging.WARNING):
            results, _ = train(cfg, extra_callbacks=[StopServer(server.pid, step=18)])
    run_dir = Path(cfg.paths.output_dir)  # 12 steps an epoch: killed in the second
    assert results["global_step"] == 4 * 12 and (run_dir / "results.json").is_file()
    assert len([r for r in metrics_rows(run_dir) if r["val/loss"]]) == 4
    warnings = [  # vaelab's (urllib3 says each retry of the request too)
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "vaelab" in r.name
    ]
    assert len(warnings) == 1 and warnings[0].startswith("MLflow: metrics not logged to"), warnings
    # Started again, the server has the run as it was when it went away: epoch 1's metrics.
    with mlflow_server(cluster, artifacts) as (url, _):
        client = MlflowClient(url)
        run_id = (run_dir / "mlflow_id").read_text().strip()
        assert [m.step for m in client.get_metric_history(run_id, "val/loss")] == [11]


def test_a_job_whose_task_fails_is_named_in_one_line_with_its_error(cluster, tmp_path, capfd):
    """A job that runs and fails (here its config is refused in the job) is one of the jobs that
    did not finish, with its own error; the sweep waited for the other, which completed."""
    sweep = tmp_path / "sweep"
    args = [VAELAB_TRAIN, "-m", *ON_THIS_NODE, "trainer.max_epochs=1", "model.beta=-1,1",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    result = run_here(args, tmp_path, capfd, env=cluster)
    message = one_line_error(result.returncode, result.stderr)
    assert re.search(
        r"1 of 2 jobs did not finish: job 0 \(SLURM job \d+_0\) failed: model\.beta", message
    ), message
    rows = metrics_rows(sweep, "sweep.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "FAILED"), ("1", "COMPLETED")]
