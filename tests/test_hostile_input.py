"""Input a hostile user gives, end to end. A run folder is data, not code: what its files name is
built only when vaelab builds such a thing or the user named it; folders vaelab did not write are
refused before anything is written; finished runs exit 0; train() holds its directory as the CLI
does; secrets stay out of files; settings, files and data that cannot work are one line that
names the real cause."""

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import cli, one_line_error, write_mnist_like
from tests.helpers import PoisonWeights, metrics_rows
from tests.test_cli import VAELAB_TRAIN
from tests.test_run_dirs import held_elsewhere, snapshot
from vaelab import compose
from vaelab.data.idx import write_idx
from vaelab.data.simulate import count_table, write_csv
from vaelab.embed import main as embed_main
from vaelab.errors import ConfigError, TrainingDiverged
from vaelab.evaluate import main as eval_main
from vaelab.models.likelihoods import negative_binomial_log_prob, poisson_log_prob
from vaelab.runs.trained import load_trained
from vaelab.sample import main as sample_main
from vaelab.train import main as train_main
from vaelab.train import train

TINY = ["trainer=cpu", "trainer.max_steps=3", "trainer.limit_val_batches=1", "logger=csv",
        "callbacks.rich_progress_bar=null", "callbacks.images=null", "iw_samples=2",
        "metrics=none"]  # fmt: skip


@pytest.fixture
def trained(tmp_path):
    """A finished tiny run: (its directory, its last.ckpt)."""
    run_dir = tmp_path / "run"
    train(compose(*TINY, output_dir=run_dir))
    return run_dir, run_dir / "checkpoints" / "last.ckpt"


def _edit_config(run_dir, edit) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    edit(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


# A shell command run by building the "class": it leaves this file if anything runs it.
def _payload(marker) -> dict:
    return {"_target_": "subprocess.run", "args": ["touch", str(marker)]}


def test_classes_named_in_a_run_folder_are_not_run(trained, tmp_path, capsys, in_process):
    """config.yaml (also in a folder above the checkpoint) and the checkpoint's
    hyper-parameters are files the user did not type: eval, embed, sample and resume refuse a
    class that is not one vaelab builds, in one line naming the key, and run nothing."""
    run_dir, ckpt = trained
    marker = tmp_path / "PWNED"
    out = f"hydra.run.dir={tmp_path / 'out'}"

    # The data of config.yaml: built by eval, embed and sample.
    pristine = (run_dir / "config.yaml").read_text()
    _edit_config(run_dir, lambda c: c.update(data=_payload(marker)))
    for main in (eval_main, embed_main, sample_main):
        last = one_line_error(*cli(main, [f"ckpt_path={ckpt}", out], capsys))
        assert "names data._target_=subprocess.run, which is not a vaelab model" in last
    assert not marker.exists()

    # The model, named through a vaelab module that imports subprocess.
    (run_dir / "config.yaml").write_text(pristine)
    popen = "vaelab.runs.run_dir.subprocess.Popen"
    _edit_config(run_dir, lambda c: c["model"].update(_target_=popen))
    last = one_line_error(*cli(eval_main, [f"ckpt_path={ckpt}", out], capsys))
    assert "model._target_=vaelab.runs.run_dir.subprocess.Popen, which is not" in last

    # A callback: built by a resume.
    (run_dir / "config.yaml").write_text(pristine)
    _edit_config(run_dir, lambda c: c["callbacks"].update(evil=_payload(marker)))
    before = snapshot(run_dir)
    args = [f"resume={run_dir}", "trainer.max_steps=6"]
    last = one_line_error(*cli(train_main, args, capsys))
    assert f"{run_dir}/config.yaml names callbacks.evil._target_=subprocess.run" in last
    assert not marker.exists() and snapshot(run_dir) == before

    # The net inside the checkpoint's hyper-parameters.
    (run_dir / "config.yaml").write_text(pristine)
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["net"] = _payload(marker)
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    (run_dir / "checkpoints" / "evil.ckpt").write_bytes((tmp_path / "evil.ckpt").read_bytes())
    last = one_line_error(
        *cli(embed_main, [f"ckpt_path={run_dir / 'checkpoints' / 'evil.ckpt'}", out], capsys)
    )
    assert "names model.net._target_=subprocess.run" in last
    assert not marker.exists()

    # The untouched run still evaluates.
    code, err = cli(eval_main, [f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'ok'}"], capsys)
    assert code == 0, err[-2000:]
    assert json.loads((tmp_path / "ok" / "results.json").read_text())["test/loss"] > 0


def test_a_class_the_user_names_is_built(trained, tmp_path, capsys, in_process):
    """A callback of the user's own in a run's config resumes when this command names it (++ on
    the command line); a model of their own loads when their config folder is on the search
    path (tests/test_own_model.py); refused otherwise."""
    run_dir, ckpt = trained
    own = {"_target_": "tests.helpers.PoisonWeights", "step": 10_000}
    _edit_config(run_dir, lambda c: c["callbacks"].update(mine=own))
    args = [f"resume={run_dir}", "trainer.max_steps=5"]
    last = one_line_error(*cli(train_main, args, capsys))
    assert last.endswith(
        "name it for this command: ++callbacks.mine._target_=tests.helpers.PoisonWeights, or the "
        "config folder that holds it ('hydra.searchpath=[file://my_conf]')"
    )
    named = "++callbacks.mine._target_=tests.helpers.PoisonWeights"
    code, err = cli(train_main, [*args, named], capsys)
    assert code == 0, err[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 5

    # Python: the classes of the user's config folders are theirs.
    my_conf = tmp_path / "my_conf" / "model"
    my_conf.mkdir(parents=True)
    (my_conf / "mine.yaml").write_text("_target_: tests.helpers.Mine\n")
    _edit_config(run_dir, lambda c: c["model"].update(_target_="tests.helpers.Mine"))
    with pytest.raises(ConfigError, match="names model._target_=tests.helpers.Mine, which is"):
        load_trained(str(ckpt), trusted=())
    compose(f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", check=False)  # as a notebook
    with pytest.raises(ConfigError, match="tests.helpers.Mine, which this installation does not"):
        load_trained(str(ckpt))  # named by the user's config folder: looked for, not refused


def test_successful_runs_exit_0_and_a_sweeper_gets_the_runs_own_metric(
    tmp_path, capsys, in_process
):
    """A run that never validated, and the resume of an AE (monitor val/recon, not the default
    val/elbo) both exit 0; a search whose metric is never measured fails in one line."""
    never = [*TINY, f"hydra.run.dir={tmp_path / 'a'}"]  # 3 steps: no epoch ends
    code, err = cli(train_main, never, capsys)
    assert code == 0, err[-2000:]
    assert "val/elbo" not in json.loads((tmp_path / "a" / "results.json").read_text())

    ae = [*TINY, "model=ae", f"hydra.run.dir={tmp_path / 'ae'}"]
    assert cli(train_main, ae, capsys)[0] == 0
    code, err = cli(train_main, [f"resume={tmp_path / 'ae'}", "trainer.max_steps=6"], capsys)
    assert code == 0, err[-2000:]

    search = [*TINY, "hparams_search=vae_optuna", "hparams_search.n_trials=1",
              "optimized_metric=val/nothing", f"paths.log_dir={tmp_path / 'logs'}",
              f"hydra.run.dir={tmp_path / 's'}"]  # fmt: skip
    last = one_line_error(*cli(train_main, search, capsys))
    assert "optimized_metric=val/nothing is None in the results of" in last
    assert "name one the run measures (test/" in last


def test_folders_vaelab_did_not_write_are_refused_as_they_are(tmp_path, capsys, in_process):
    folder = tmp_path / "notes"
    folder.mkdir()
    for text in ("a: 1\n", "a: [1\n", "- just\n- a list\n", "task_name: train\nmodel: 3\n"):
        (folder / "config.yaml").write_text(text)
        last = one_line_error(*cli(train_main, [f"resume={folder}"], capsys))
        assert last.startswith(f"error: {folder}/config.yaml is not the config.yaml of a vaelab")
        assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]
        assert (folder / "config.yaml").read_text() == text


def test_a_sweep_dir_started_again_with_other_values_is_refused(tmp_path, capfd, in_process):
    """Job folders are named by number alone: a sweep of other values into the same folder
    would put old metrics under new labels. Refused before anything is written; the same sweep
    with a raised max_steps continues its jobs (and relabels them truthfully)."""
    sweep = tmp_path / "sweep"
    base = ["-m", *TINY, f"hydra.sweep.dir={sweep}"]
    code, err = cli(train_main, [*base, "model.beta=1,2"], capfd)
    assert code == 0, err[-2000:]
    before = snapshot(sweep)
    last = one_line_error(*cli(train_main, [*base, "model.beta=3,4"], capfd))
    assert last == (
        f"error: hydra.sweep.dir={sweep} holds another sweep (model.beta=1,2 there, "
        f"model.beta=3,4 now): continue it with its own overrides (only trainer.max_epochs, "
        f"trainer.max_steps and the logging may change), or give a new hydra.sweep.dir"
    )
    assert snapshot(sweep) == before

    code, err = cli(train_main, [*base, "model.beta=1,2", "trainer.max_steps=5"], capfd)
    assert code == 0, err[-2000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "results.json").read_text())["global_step"] == 5
    rows = metrics_rows(sweep, "sweep.csv")
    assert [(r["status"], r["model.beta"], r["trainer.max_steps"]) for r in rows] == [
        ("COMPLETED", "1", "5"),
        ("COMPLETED", "2", "5"),
    ]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("mine")
    foreign = [*base[:-1], f"hydra.sweep.dir={tmp_path / 'mine'}", "seed=1,2"]
    assert one_line_error(*cli(train_main, foreign, capfd)).endswith(
        "holds files but no sweep (no multirun.yaml): give a new or empty hydra.sweep.dir"
    )
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]


def test_train_in_python_holds_its_directory_as_the_cli_does(tmp_path):
    run_dir = tmp_path / "run"
    train(compose(*TINY, output_dir=run_dir))
    rows = (run_dir / "metrics.csv").read_text()
    with pytest.raises(Exception, match=f"{run_dir} already holds a run: continue it with resume"):
        train(compose(*TINY, output_dir=run_dir))
    assert (run_dir / "metrics.csv").read_text() == rows

    # Another process holds a fresh directory: refused, nothing written.
    other = tmp_path / "other"
    with held_elsewhere(other):
        with pytest.raises(Exception, match="is in use by another vaelab process"):
            train(compose(*TINY, output_dir=other))
        assert [p.name for p in other.iterdir()] == [".vaelab.lock"]
    # Released when train() returns: the resume goes on in this process.
    results, _ = train(compose(*TINY, f"resume={run_dir}", "trainer.max_steps=5"))
    assert results["global_step"] == 5


def test_a_password_in_a_url_and_a_sweeps_secrets_stay_out(tmp_path, capfd, in_process):
    """A password inside a tracking URI is written nowhere and printed nowhere, however short;
    so is a short secret swept over; and a tracking server that does not answer is one line
    within seconds, not minutes of retries."""
    with socket.socket() as closed:  # bound, never listening: it refuses, and no one else gets it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        run_dir = tmp_path / "run"
        args = [*TINY, "logger=mlflow", f"hydra.run.dir={run_dir}",
                f"logger.mlflow.tracking_uri=http://me:hunter2@127.0.0.1:{port}/"]  # fmt: skip
        code, printed = cli(train_main, args, capfd, both=True)
    # Refused by the check before MLflow's client (which retries for minutes): its words.
    assert one_line_error(code, printed) == (
        f"error: logger.mlflow.tracking_uri=http://me:***@127.0.0.1:{port}/: no tracking "
        f"server answers at 127.0.0.1:{port} (Connection refused); start it, or give another "
        f"tracking_uri"
    )
    assert "hunter2" not in printed
    assert not any(b"hunter2" in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())

    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "+service.api_key=Qz7kx,Wv3jy", f"hydra.sweep.dir={sweep}",
            "+db.url=postgres://me:Xq4Pw@localhost/db"]  # fmt: skip
    code, printed = cli(train_main, args, capfd, both=True)
    assert code == 0, printed[-2000:]
    (job_line,) = [line for line in printed.splitlines() if "#0 : " in line]
    assert " +service.api_key=*** " in job_line
    for secret in (b"Qz7kx", b"Wv3jy", b"Xq4Pw"):
        assert secret not in printed.encode()
        assert not [p for p in sweep.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert "url: postgres://me:***@localhost/db" in (sweep / "0" / "config.yaml").read_text()


@pytest.mark.parametrize("model", ["wae_mmd", "info_vae", "dip_vae"])
def test_a_batch_statistic_refuses_batches_of_one(tmp_path, model):
    """An MMD or a covariance over one example is 0: the regulariser would be silently off."""
    cfg = compose(*TINY, f"model={model}", "data.batch_size=1", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"data.batch_size=1: \w+'s .* is computed over the ex"):
        train(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_an_evaluation_stops_on_sigterm(trained, tmp_path):
    """A huge iw_samples runs for hours: SIGTERM ends it within seconds, exit 143, one line."""
    _, ckpt = trained
    out = tmp_path / "eval"
    command = [VAELAB_TRAIN.replace("vaelab-train", "vaelab-eval"), f"ckpt_path={ckpt}",
               "iw_samples=1000000", f"hydra.run.dir={out}"]  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "VAELAB_TRACEBACKS")
    }
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Sent as the test loop starts; a moment earlier or later ends the same way.
        while "importance samples per example" not in (
            (out / "eval.log").read_text() if (out / "eval.log").exists() else ""
        ):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        f"error: stopped by SIGTERM: {out} is incomplete; run the command again"
    )
    assert not (out / "results.json").exists()


@pytest.mark.parametrize(
    "override",
    ["metrics.bins=0", "metrics.batch_size=0", "metrics.num_train=-5", "metrics.seed=x",
     "metrics.num_variance_estimate=1", "metrics.enabled=maybe"],
)  # fmt: skip
def test_metric_settings_are_checked_before_training(override):
    with pytest.raises(ConfigError, match=f"^{override.split('=')[0]}="):
        compose(override)


def test_a_setting_a_checkpoint_restores_is_refused_not_ignored(trained, tmp_path):
    """ckpt_path= restores the optimizer with its own learning rate: another one in the config
    would be ignored while config.yaml claimed it."""
    _, ckpt = trained
    for override in ("model.optimizer.lr=1e6", "model/scheduler=cosine"):
        cfg = compose(*TINY, f"ckpt_path={ckpt}", override, output_dir=tmp_path / "new")
        with pytest.raises(ConfigError, match=f"ckpt_path={ckpt} restores the optimizer and"):
            train(cfg)
        assert not (tmp_path / "new" / "config.yaml").exists()
    # What the checkpoint does not restore (the loss weight) is honoured; the rest continues.
    cfg = compose(*TINY, f"ckpt_path={ckpt}", "model.beta=4", "trainer.max_steps=5",
                  output_dir=tmp_path / "new")  # fmt: skip
    results, objects = train(cfg)
    assert results["global_step"] == 5 and objects["model"].hparams.beta == 4


def test_data_that_does_not_fit_is_one_line(tmp_path, capsys, in_process):
    """A test split of another image size beside the training files; a resume (or eval) on a
    data folder of another image size; an AE checkpoint under a VAE run's config; an image size
    of 0: each a line naming the problem, nothing trained."""
    mnist = write_mnist_like(tmp_path / "mnist", n_train=200, n_test=50)
    fit = ["data=mnist", "data.val_size=50"]
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("t10k", 50)):
        write_idx(small / f"{name}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 14, 14)))
        shutil.copy(mnist / f"{name}-labels-idx1-ubyte.gz", small)
    mixed = tmp_path / "mixed"
    shutil.copytree(mnist, mixed)
    write_idx(mixed / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (50, 14, 14)))
    labels = np.asarray(rng.integers(0, 10, 50), np.uint8)
    write_idx(mixed / "t10k-labels-idx1-ubyte.gz", labels)

    last = one_line_error(*cli(train_main, [*TINY, *fit, f"data.data_dir={mixed}"], capsys))
    assert "t10k-images-idx3-ubyte.gz holds images of shape (1, 14, 14)" in last
    assert "train-images-idx3-ubyte.gz of shape (1, 28, 28): the splits of one dataset" in last

    run_dir = tmp_path / "run"
    args = [*TINY, *fit, f"data.data_dir={mnist}", f"hydra.run.dir={run_dir}"]
    code, err = cli(train_main, args, capsys)
    assert code == 0, err[-2000:]
    before = snapshot(run_dir)
    again = [f"resume={run_dir}", "trainer.max_steps=6", f"data.data_dir={small}"]
    last = one_line_error(*cli(train_main, again, capsys))
    assert last == (
        "error: the data has examples of shape (1, 14, 14), the checkpoint's model was trained "
        "on shape (1, 28, 28): give the data the run was trained on (data.data_dir)"
    )
    # Refused after the data is read, so after Hydra's record of the attempt (.hydra_resume_*,
    # train.log): the run's own files are as they were.
    own = ("checkpoints/", "metrics.csv", "config.yaml", "results.json")
    before = {k: v for k, v in before.items() if k.startswith(own)}
    assert {k: v for k, v in snapshot(run_dir).items() if k.startswith(own)} == before
    assert len(before) >= 5

    ae_dir = tmp_path / "ae"
    cli(train_main, [*TINY, "model=ae", f"hydra.run.dir={ae_dir}"], capsys)
    vae_dir = tmp_path / "vae"
    cli(train_main, [*TINY, f"hydra.run.dir={vae_dir}"], capsys)
    shutil.copy(ae_dir / "checkpoints" / "last.ckpt", vae_dir / "checkpoints" / "ae.ckpt")
    args = [f"ckpt_path={vae_dir / 'checkpoints' / 'ae.ckpt'}", f"hydra.run.dir={tmp_path / 'e'}"]
    last = one_line_error(*cli(eval_main, args, capsys))
    assert "ae.ckpt does not fit this model: " in last
    assert last.endswith(f"it is not a checkpoint of the run of {vae_dir}/config.yaml")

    with pytest.raises(ConfigError, match="data.image_size=0: must be an integer >= 8"):
        compose("data=sprites", "data.image_size=0")


def test_mlflow_artifacts_that_cannot_be_stored(tmp_path, caplog):
    """An artifact location that cannot be written is refused before the run; one that breaks
    during the run (here: a file now stands where its folder was) is a warning, and the run goes
    on."""
    from vaelab.loggers import MLFlowLogger

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ConfigError, match="artifact_location=file:///proc/vaelab: cannot write"):
        MLFlowLogger(str(tmp_path / "a"), store, artifact_location="file:///proc/vaelab")
    artifacts = tmp_path / "artifacts"
    (tmp_path / "b").mkdir()
    logger = MLFlowLogger(str(tmp_path / "b"), store, artifact_location=artifacts.as_uri())
    logger.log_hyperparams({"seed": 1})
    (tmp_path / "b" / "results.json").write_text("{}")
    shutil.rmtree(artifacts)
    artifacts.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        logger.log_file(tmp_path / "b" / "results.json")
    assert f"MLflow: results.json not logged to {store}" in caplog.text
    assert "the run goes on" in caplog.text


def test_rows_of_zero_counts_train(tmp_path):
    """A cell with no reads has a library of 0, so a mean of 0: valid data (scRNA-seq has such
    rows), whose gradient must stay finite, in a table where some or all rows are zero."""
    zero = torch.zeros(4, 6)
    for log_prob in (poisson_log_prob, lambda x, m: negative_binomial_log_prob(x, m, zero[0])):
        mean = zero.clone().requires_grad_()
        log_prob(zero, mean).sum().backward()
        assert torch.isfinite(mean.grad).all()
    table = count_table(cells=200, genes=20, types=2, seed=0)
    for rows in (slice(None, None, 10), slice(None)):
        counts = table["counts"].copy()
        counts[rows] = 0
        path = tmp_path / "counts.csv"
        write_csv(path, table | {"counts": counts})
        for likelihood in ("poisson", "negative_binomial"):
            args = ["experiment=counts", f"data.path={path}", f"model.likelihood={likelihood}"]
            cfg = compose(*TINY, *args, "trainer.max_steps=6", output_dir=tmp_path / likelihood)
            results, _ = train(cfg)
            assert np.isfinite(results["test/elbo"]) and results["global_step"] == 6
            shutil.rmtree(tmp_path / likelihood)


def test_wrong_causes_are_not_named(tmp_path, capsys, in_process):
    """Data too small to split, a divergence before any checkpoint, a β-TCVAE told of fewer
    examples than a batch, a count model evaluated on negative numbers: each says what is wrong."""
    one = tmp_path / "one.csv"
    one.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ConfigError, match="the data holds 1 example; training needs at least 3 "):
        train(compose(*TINY, "data=tabular", f"data.path={one}", output_dir=tmp_path / "one"))
    grid = [f"data.grid.{name}=1" for name in ("shape", "scale", "orientation", "position_x",
                                                 "position_y")]  # fmt: skip
    with pytest.raises(ConfigError, match="the data holds 1 example; training needs at least 3"):
        train(compose(*TINY, "data=sprites", *grid, output_dir=tmp_path / "grid"))

    # Poisoned on the last step of the first epoch: the first checkpoint is the one that fails.
    cfg = compose(*TINY, "trainer.max_steps=-1", "trainer.max_epochs=2", output_dir=tmp_path / "d")
    with pytest.raises(TrainingDiverged, match="the last good checkpoint: none written yet;"):
        train(cfg, extra_callbacks=[PoisonWeights(step=12)])
    assert not (tmp_path / "d" / "checkpoints" / "best.ckpt").exists()

    with pytest.raises(
        ConfigError, match=r"model.dataset_size=10 is smaller than a training batch \(128"
    ):
        train(
            compose(*TINY, "model=beta_tcvae", "model.dataset_size=10", output_dir=tmp_path / "tc")
        )

    table = count_table(cells=100, genes=10, types=2, seed=0)
    counts = tmp_path / "counts.csv"
    write_csv(counts, table)
    run_dir = tmp_path / "counts"
    train(compose(*TINY, "experiment=counts", f"data.path={counts}", output_dir=run_dir))
    lines = counts.read_text().splitlines()
    cells = lines[3].split(",")  # example 2: its name, its type, g0, ...
    cells[2] = "-3"
    negative = tmp_path / "negative.csv"
    negative.write_text("\n".join([*lines[:3], ",".join(cells), *lines[4:]]) + "\n")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    args = [f"ckpt_path={ckpt}", f"data.path={negative}", f"hydra.run.dir={tmp_path / 'e'}"]
    last = one_line_error(*cli(eval_main, args, capsys))
    assert last.startswith("error: model.likelihood=negative_binomial needs counts (whole numbers")
    assert "(example 2, feature 'g0'); give it data of the kind it was trained on" in last


def test_out_of_memory_is_one_line(tmp_path):
    """64 GiB of importance samples under a 12 GiB address-space limit: torch's allocator fails
    (as a GPU's would), and the command says which settings size the work."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, 12 * 2**30))

    args = [VAELAB_TRAIN, "model=iwae", "model.k=100000", "trainer=cpu", "logger=none",
            f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, preexec_fn=limit)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: out of memory: [\d.]+ GiB did not fit; lower data.batch_size, the samples per "
        r"example \(model.k, metrics.iw_samples\) or the model's size",
        last,
    ), last


def test_optimizer_state_that_does_not_fit_the_parameters_is_refused(tmp_path):
    """A checkpoint whose optimizer state belongs to parameters in another order (written by
    another version of the model) is refused in one line before training; torch would load it
    by position, and a fused Adam step over tensors of other shapes crashes the process."""
    run_dir = tmp_path / "run"
    # Unfused: without the check, a shape error here instead of a crash of the test process.
    quick = ["trainer=cpu", "callbacks.rich_progress_bar=null", "model.optimizer.fused=false"]
    train(compose(*quick, "trainer.max_epochs=1", output_dir=run_dir))
    path = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["optimizer_states"][0]["state"]
    state[0], state[1] = state[1], state[0]  # the first two parameters' moments swapped
    torch.save(checkpoint, path)
    before = snapshot(run_dir)
    with pytest.raises(ConfigError, match="optimizer state does not fit this model: parameter 0"):
        train(compose(*quick, f"resume={run_dir}", "trainer.max_epochs=2"))
    assert snapshot(run_dir)["checkpoints/last.ckpt"] == before["checkpoints/last.ckpt"]
