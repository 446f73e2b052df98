"""Bad input and faults end in one clear line and a non-zero exit, and nothing already written is
lost: a table of bad command lines through the real CLI, divergence, a full disk, and random
override sets thrown at the config layer."""

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import cli, one_line_error, write_mnist_like
from tests.datasets import write_cifar_like
from tests.helpers import PoisonWeights
from tests.test_cli import VAELAB_TRAIN, run
from vaelab.cli.errors import _user_error, one_line
from vaelab.config.schema import validate
from vaelab.embed import main as embed_main
from vaelab.errors import ConfigError, DataError, TrainingDiverged
from vaelab.evaluate import main as eval_main
from vaelab.sample import main as sample_main
from vaelab.train import main as train_main
from vaelab.train import train

# Refused while the config is checked, before anything heavy is imported or any data read.
CONFIG_ERRORS = [
    (["model.beta=-1"], "model.beta=-1: must be >= 0"),
    (["model.beta=abc"], "model.beta='abc': must be a number"),
    (["model.beta="], "model.beta='': must be a number"),
    (["model.beta=[1,2]"], "model.beta=[1, 2]: must be a number"),
    (["model.latent_dim=0"], "model.latent_dim=0: must be an integer >= 1"),
    (["model.latent_dim=2.5"], "model.latent_dim=2.5: must be an integer >= 1"),
    (["model.optimizer.lr=0"], "model.optimizer.lr=0: must be > 0"),
    (["model.sigma=-0.1"], "model.sigma=-0.1: must be > 0"),
    (["model.free_bits=-1"], "model.free_bits=-1: must be >= 0"),
    (["model.likelihood=laplace"], "model.likelihood='laplace': must be one of bernoulli"),
    (["data.batch_size=0"], "data.batch_size=0: must be an integer >= 1"),
    (["data.val_size=-3"], "data.val_size=-3: must be > 0"),
    (["data.binarize=maybe"], "data.binarize='maybe': must be one of none, dynamic, static"),
    (["data.on_device=sometimes"], "data.on_device='sometimes': must be true, false or auto"),
    (["seed=-1"], "seed=-1: must be an integer >= 0"),
    (["iw_samples=0"], "iw_samples=0: must be an integer >= 1"),
    (["trainer.max_epochs=-5"], "trainer.max_epochs=-5: must be an integer >= 1, or -1 for no"),
    (["trainer.precision=16-mixed"], "trainer.precision=16-mixed needs a GPU"),
    (
        ["trainer.precision=16", "trainer.gradient_clip_val=1"],
        "trainer.gradient_clip_val with trainer.precision=16 needs an optimizer that is not fused",
    ),
    (
        ["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1"],
        "trainer.gradient_clip_val with trainer.precision=bf16-mixed needs an optimizer that is",
    ),
    (["trainer.steps_per_call=0"], "trainer.steps_per_call=0: must be an integer >= 1, or auto"),
    (["trainer.precision=8"], "trainer.precision=8: must be one of 64-true"),
    (["trainer=gpu"], "trainer.accelerator=gpu, but no CUDA GPU is visible"),
    (["model/kl_schedule=linear", "model.kl_schedule.warmup_steps=0"], "warmup_steps=0"),
    (["model/kl_schedule=cyclical", "model.kl_schedule.n_cycles=0"], "n_cycles=0: must be"),
    (["model/kl_schedule=capacity", "model.kl_schedule.capacity=-1"], "capacity=-1: must be"),
    (["model.betta=1"], "model.betta is not a config key: did you mean model.beta?"),
    (["trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
    (["model=ae", "model.latentdim=3"], "did you mean model.latent_dim?"),
    (["zzz=1"], "zzz is not a config key (to add a new key use +zzz=...)"),
    (["model=nope"], "Could not find 'model/nope' Available options in 'model': ae,"),
    (["hydra/launcher=nope"], "Could not find 'hydra/launcher/nope'"),
    (["model.beta=1)"], "Error parsing override 'model.beta=1)'"),
    (["data=tabular"], "data.path must be set: add data.path=<value>"),
    (["callbacks.images.dirpath=/tmp/elsewhere"], "is outside the run directory"),
    (["logger.csv.save_dir=../.."], "logger.csv.save_dir=../.. is outside the run directory"),
    (["callbacks.model_checkpoint.filename=../../x"], "filename=../../x is outside the run"),
    (["logger.csv.name=../up"], "logger.csv.name=../up is outside the run directory"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer >= 1, or -1 for no"),
    (["trainer.max_steps=abc"], "trainer.max_steps='abc': must be an integer >= 1, or -1"),
    (["trainer.accumulate_grad_batches=0"], "accumulate_grad_batches=0: must be an integer >= 1"),
    (["trainer.devices=abc"], "trainer.devices='abc': must be a number of devices >= 1"),
    (["trainer.devices=[0,1]"], "trainer.devices=[0, 1]: device indices need GPUs"),
    (["trainer.num_nodes=0"], "trainer.num_nodes=0: must be an integer >= 1"),
    (["trainer.strategy=nonsense"], "trainer.strategy='nonsense': must be auto or one of"),
    (["+trainer.profiler=nope"], "trainer.profiler='nope': must be one of simple"),
    (["trainer.limit_train_batches=1.5"], "limit_train_batches=1.5: must be a fraction in [0, 1]"),
    (["+trainer.gradient_clip_algorithm=clip"], "gradient_clip_algorithm='clip': must be one of"),
    (["+trainer.max_time=soon"], "trainer.max_time='soon': must be DD:HH:MM:SS"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0: must be an integer >= 1"),
    (["trainer.accelerator=quantum"], "trainer.accelerator='quantum': must be one of auto, cpu"),
    (["data.val_size=nan"], "data.val_size=nan: must be a finite number"),
    (["model.optimizer.lr=nan"], "model.optimizer.lr=nan: must be a finite number"),
    (["model.beta=inf"], "model.beta=inf: must be a finite number"),
    (["model=iwae", "model.k=0"], "model.k=0: must be an integer >= 1"),
    (["model=beta_tcvae", "model.tc_estimator=exact"], "model.tc_estimator='exact': must be one"),
    (["model/kl_schedule=cyclical", "model.kl_schedule.ratio=2"], "ratio=2: must be in (0, 1]"),
    (["callbacks.collapse_monitor.patience=0"], "patience=0: must be an integer >= 1"),
    (["callbacks.images.every_n_epochs=0"], "every_n_epochs=0: must be an integer >= 1"),
    (["hydra.run.dir=/proc/vaelab_run"], "cannot write in /proc/vaelab_run"),
    (["resume=/nope"], "resume=/nope continues the run in its own directory, not in hydra.run"),
    (
        ["experiment=tabular", "data.path=x.csv", "model.likelihood=bernoulli"],
        "data.standardize=true makes them any real number",
    ),
]


def _bad_files(tmp_path: Path) -> list[tuple[list[str], str]]:
    """Refused when the data is read or the model built: each names the file or the key."""
    idx = write_mnist_like(tmp_path / "idx")
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    cifar = write_cifar_like(tmp_path / "cifar")
    (cifar / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("a,b\n1,\n" + "1,2\n" * 20)
    words = tmp_path / "words.csv"
    words.write_text("a,b\n1,one\n" + "1,2\n" * 20)
    np.savez(tmp_path / "table.npz", x=np.ones((50, 4)))
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("a,b\n" + "".join(f"{i % 7},{i % 3}\n" for i in range(60)))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "table.npz").read_bytes()[:300])
    return [
        (["data=mnist", f"data.data_dir={tmp_path / 'empty'}"], "MNIST not found: looked in"),
        (["data=fashion_mnist", f"data.data_dir={idx}"], "train-images-idx3-ubyte.gz"),
        (["data=cifar10", f"data.data_dir={cifar}"], "data_batch_3 is not a CIFAR-10"),
        (["data=tabular", f"data.path={gaps}"], "gaps.csv: missing or infinite values in"),
        (["data=tabular", f"data.path={words}"], "words.csv: column 'b' is not numeric"),
        (["data=tabular", f"data.path={tmp_path / 'no.csv'}"], "no.csv: no such file"),
        (["data=tabular", f"data.path={truncated}"], "cannot read " + str(truncated)),
        (["model/net=conv"], "model/net=conv with 2 stride-2 layers needs height and width"),
        (["+model.foo=1"], "vaelab.models.VAE takes no argument 'foo'"),
        (["model=beta_tcvae", "model.free_bits=0.5"], "model=beta_tcvae weighs the total"),
        (["model=factor_vae", "trainer.gradient_clip_val=1"], "steps its optimizers itself"),
        (["model=cvae", "data=tabular", f"data.path={unlabelled}"], "this data has none"),
        (["model=factor_vae", "data.batch_size=1"], "splits each training batch into two"),
        (["model=vq_vae", "model.latent_dim=7"], "make latent_dim a multiple of it"),
        (["data.val_size=0.9999"], "data.val_size=0.9999: gives 1797 of 1797 examples"),
        (["ckpt_path=/nope.ckpt"], "ckpt_path='/nope.ckpt': no such file"),
    ]


def _assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last
    assert "Traceback" not in result.stderr


def test_the_table_has_enough_rows(tmp_path):
    assert len(CONFIG_ERRORS) + len(_bad_files(tmp_path)) >= 30


@pytest.mark.parametrize(
    ("args", "fragment"), CONFIG_ERRORS, ids=[" ".join(a) for a, _ in CONFIG_ERRORS]
)
def test_bad_config_is_refused_in_one_line(tmp_path, args, fragment, capfd, in_process):
    # The console script's entry point in this process (Hydra, the run guard, the exit), its
    # stderr caught at the file descriptor: the command but for the ~8 s of a fresh interpreter.
    code, err = cli(train_main, [f"hydra.run.dir={tmp_path / 'run'}", *args], capfd)
    assert fragment in one_line_error(code, err)
    assert len(err.strip().splitlines()) == 1  # that line and nothing else
    assert not (tmp_path / "run").exists()  # refused before Hydra wrote anything


def test_an_unwritable_log_folder_is_refused_in_one_line(tmp_path, capfd, in_process):
    """The default run and sweep folders, made as they are named, under a folder no one can
    write in: the run's and the sweep's one line, and nothing written."""
    logs = "paths.log_dir=/proc/vaelab_logs"
    for flags, folder in (([], "runs"), (["-m", "seed=1,2"], "multiruns")):
        code, err = cli(train_main, [*flags, logs, "trainer.max_epochs=1"], capfd)
        line = one_line_error(code, err)
        assert line.startswith(f"error: cannot write in /proc/vaelab_logs/train/{folder}/"), line
        assert line.endswith(f"give a writable hydra.{'sweep' if flags else 'run'}.dir"), line


def test_the_real_command_refuses_in_one_line_too(tmp_path):
    """The first of the table through a fresh process: its exit status and all it prints (the
    table above runs the same entry point in this process)."""
    args, fragment = CONFIG_ERRORS[0]
    result = run([VAELAB_TRAIN, f"hydra.run.dir={tmp_path / 'run'}", *args], cwd=tmp_path)
    _assert_one_line_error(result, fragment)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert not (tmp_path / "run").exists()


def test_bad_files_are_refused_in_one_line_that_names_them(tmp_path, capsys, in_process):
    for args, fragment in _bad_files(tmp_path):
        out = f"hydra.run.dir={tmp_path / 'run'}"
        assert fragment in one_line_error(*cli(train_main, [*args, "debug=fdr", out], capsys))


def test_bad_arguments_of_the_other_commands(tmp_path, capsys, in_process):
    some = tmp_path / "some.ckpt"
    some.write_bytes(b"")
    cases = [
        (eval_main, ["ckpt_path=/nope.ckpt"], "ckpt_path='/nope.ckpt': no such file"),
        (embed_main, ["ckpt_path=/nope.ckpt", "split=bogus"], "split='bogus': must be one of"),
        (embed_main, ["ckpt_path=/nope.ckpt", "format=xls"], "format='xls': must be one of npy"),
        (sample_main, ["ckpt_path=/nope.ckpt", "n=0"], "n=0: must be an integer >= 1"),
        (sample_main, ["ckpt_path=/nope.ckpt", "n=abc"], "n='abc': must be an integer >= 1"),
        (sample_main, ["ckpt_path=/nope.ckpt", "seed=abc"], "seed='abc': must be an integer"),
        (
            eval_main,
            ["ckpt_path=/nope.ckpt", "trainer.accelerator=quantum"],
            "trainer.accelerator='quantum'",
        ),
        (eval_main, ["ckpt_path=/nope.ckpt", "iw_samples=nan"], "iw_samples=nan: must be"),
        (embed_main, [f"ckpt_path={some}", "hydra.run.dir=/proc/x"], "cannot write in /proc/x"),
        (sample_main, [], "ckpt_path must be set: add ckpt_path=<value>"),
        (embed_main, ["ckpt_path=/nope.ckpt", "splitt=all"], "did you mean split?"),
    ]
    for main, args, fragment in cases:
        out = [f"hydra.run.dir={tmp_path / 'out'}"]
        assert fragment in one_line_error(*cli(main, [*out, *args], capsys))
        assert not (tmp_path / "out").exists()  # refused before Hydra wrote anything


def test_a_long_csv_field_is_read(compose_train, tmp_path):
    """A free-text column longer than Python's csv field limit (128 KiB) is a valid file."""
    table = tmp_path / "notes.csv"
    rows = [f"{i},{i % 3},{'long note ' * 20000 if i == 5 else 'short'}" for i in range(40)]
    table.write_text("a,b,note\n" + "\n".join(rows) + "\n")
    cfg = compose_train("experiment=tabular", f"data.path={table}", "data.feature_columns=[a,b]",
                        "debug=fdr", "callbacks.images=null", "logger=none")  # fmt: skip
    results, _ = train(cfg)
    assert "test/loss" in results


def test_resume_of_a_folder_that_is_not_a_run_leaves_it_as_it_was(tmp_path, capsys, in_process):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("mine")
    last = one_line_error(*cli(train_main, [f"resume={folder}"], capsys))
    assert f"resume={folder}: {folder}/config.yaml does not exist" in last
    assert [p.name for p in folder.iterdir()] == ["todo.txt"]


def test_a_resume_removes_a_callback_the_run_was_started_with(tmp_path, capsys, in_process):
    """`+callbacks.x=...` at the start is not a key of the config a resume's command line is
    checked against: the error says to use ++, and ++callbacks.x=null removes it."""
    run_dir = tmp_path / "run"
    start = [f"hydra.run.dir={run_dir}", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
             "trainer.limit_val_batches=1", "logger=none", "callbacks.images=null", "iw_samples=2",
             "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
             "+callbacks.stop.monitor=val/elbo"]  # fmt: skip
    GlobalHydra.instance().clear()
    sys.argv = ["vaelab", *start]
    train_main()
    assert "EarlyStopping" in (run_dir / "config.yaml").read_text()
    again = [f"resume={run_dir}", "trainer.max_epochs=2"]
    last = one_line_error(*cli(train_main, [*again, "callbacks.stop=null"], capsys))
    assert last == (
        "error: callbacks.stop is not a config key: did you mean callbacks? (to add a new key "
        "use +callbacks.stop=..., or ++callbacks.stop=... to change a key the run was started "
        "with)"
    )
    GlobalHydra.instance().clear()
    sys.argv = ["vaelab", *again, "++callbacks.stop=null"]
    train_main()
    assert "EarlyStopping" not in (run_dir / "config.yaml").read_text()
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 4


def test_checkpoints_and_data_that_do_not_fit_are_named(
    compose_train, tmp_path, capsys, in_process
):
    cfg = compose_train("trainer.max_epochs=1", "callbacks.images=null", "logger=none")
    results, _ = train(cfg)
    checkpoint = torch.load(results["best_ckpt"], weights_only=True)
    del checkpoint["hyper_parameters"]
    bare = Path(results["best_ckpt"]).with_name("bare.ckpt")
    torch.save(checkpoint, bare)
    out = f"hydra.run.dir={tmp_path / 'eval'}"
    last = one_line_error(*cli(eval_main, [f"ckpt_path={bare}", out], capsys))
    assert f"ckpt_path={bare} holds no hyper_parameters" in last
    mnist = write_mnist_like(tmp_path / "mnist")
    other = ["data=mnist", f"data.data_dir={mnist}", "data.val_size=50"]
    args = [f"ckpt_path={results['best_ckpt']}", *other, out]
    last = one_line_error(*cli(embed_main, args, capsys))
    assert (
        "examples of shape (1, 28, 28), the checkpoint's model was trained on shape (1, 8, 8)"
        in last
    )


def test_one_latent_dimension_validates(compose_train):
    """torchmetrics returns a one-element result squeezed to a scalar."""
    cfg = compose_train("model.latent_dim=1", "debug=fdr", "logger=none")
    results, _ = train(cfg)
    assert "val/kl_dim00" in results


@pytest.mark.parametrize("model", ["vae", "iwae", "beta_tcvae"])
def test_64_and_bf16_true_precision_train_test_and_draw(compose_train, model):
    """The pictures, the K-sample bounds and the KL split work in the model's own dtype."""
    for precision in ("64-true", "bf16-true"):
        cfg = compose_train(f"model={model}", f"trainer.precision={precision}", "debug=fdr",
                            "logger=none", "callbacks.images.every_n_epochs=1")  # fmt: skip
        results, _ = train(cfg)
        assert (Path(cfg.paths.output_dir) / "images" / "samples.png").is_file()
        assert np.isfinite(results["test/nll_iw"]), precision


# --- divergence -------------------------------------------------------------------------------


def test_divergence_stops_the_run_and_keeps_the_good_checkpoints(compose_train):
    cfg = compose_train("trainer.max_epochs=4", "callbacks.images=null")
    run_dir = Path(cfg.paths.output_dir)
    # 12 steps per epoch: checkpoints after epoch 0, then the weights turn to NaN at step 15.
    with pytest.raises(TrainingDiverged) as caught:
        train(cfg, extra_callbacks=[PoisonWeights(step=15)])
    message = str(caught.value)
    assert "\n" not in message and "training diverged by step" in message
    assert "checkpoints/best.ckpt" in message and "model.optimizer.lr" in message
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert checkpoint["global_step"] == 12
        assert all(torch.isfinite(w).all() for w in checkpoint["state_dict"].values())


def test_divergence_through_the_cli_is_one_line(tmp_path, capfd, in_process):
    poison = ["+callbacks.poison._target_=tests.helpers.PoisonWeights", "+callbacks.poison.step=3"]
    args = [*poison, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'run'}"]
    assert "training diverged by step" in one_line_error(*cli(train_main, args, capfd))
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()  # never a NaN one


def test_a_checkpoint_of_another_model_names_the_settings_that_differ(compose_train):
    cfg = compose_train("trainer.max_epochs=1", "callbacks.images=null")
    results, _ = train(cfg)
    ckpt = results["best_ckpt"]
    other = compose_train("model.latent_dim=4", "model.net.hidden=[64]", f"ckpt_path={ckpt}")
    with pytest.raises(ConfigError) as caught:
        train(other)
    message = str(caught.value)
    assert f"ckpt_path={ckpt} does not fit this model" in message
    assert "model.latent_dim is 8 there, 4 here" in message
    assert "model.net.hidden is [512, 256] there, [64] here" in message


# --- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_leaves_the_previous_checkpoint_intact(compose_train):
    """Train one epoch; then continue it with the file size limit (RLIMIT_FSIZE) below a
    checkpoint's size, which fails every large write as a full disk does: a clear error, and the
    first epoch's checkpoints and results.json unchanged."""
    cfg = compose_train("trainer.max_epochs=1", "callbacks.images=null")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    before = {p: p.read_bytes() for p in (run_dir / "checkpoints").glob("*.ckpt")}
    results = (run_dir / "results.json").read_bytes()
    limit = min(len(b) for b in before.values()) // 2
    again = compose_train(f"resume={run_dir}", "trainer.max_epochs=2", "callbacks.images=null")
    again.paths.output_dir = str(run_dir)  # as hydra.run.dir is for a resume on the CLI
    old_limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limits[1]))
    try:
        with pytest.raises(DataError) as caught:
            train(again)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limits)
        signal.signal(signal.SIGXFSZ, old_handler)
    message = str(caught.value)
    assert "cannot write checkpoint" in message and "is untouched" in message
    assert "\n" not in message
    assert {p: p.read_bytes() for p in before} == before
    assert (run_dir / "results.json").read_bytes() == results
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_a_signal_that_exits_during_a_checkpoint_write_exits_and_leaves_no_partial_file(tmp_path):
    """submitit's SIGUSR2 handler (and a Ctrl-C) exit by raising in whatever runs: inside
    torch.save that comes out as the zip writer's RuntimeError. The exit must go on as an exit
    (not as a "cannot write" error, which failed a SLURM job at its time limit) and the previous
    checkpoint stay whole."""
    from vaelab.runs.checkpoint_io import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    before = path.read_bytes()
    big = {"step": 2, "w": torch.zeros(25_000_000)}  # 100 MB: the timer fires while it is written

    def exit_now(signum, frame):
        sys.exit(-1)

    old_handler = signal.signal(signal.SIGALRM, exit_now)
    signal.setitimer(signal.ITIMER_REAL, 0.02)
    try:
        with pytest.raises(SystemExit):
            while True:  # until the timer fires, whatever the disk's speed
                io.save_checkpoint(big, path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
    assert path.read_bytes() == before or torch.load(path)["step"] == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_results_write_is_one_clear_error_and_leaves_no_partial_file(tmp_path):
    from vaelab.runs.run_dir import write_results

    write_results(tmp_path, {"test/elbo": -1.0})
    before = (tmp_path / "results.json").read_bytes()
    (tmp_path / ".results.json.tmp").mkdir()  # the temporary file cannot be created
    with pytest.raises(DataError, match=r"cannot write .*results.json: .*is untouched"):
        write_results(tmp_path, {"test/elbo": -2.0})
    assert (tmp_path / "results.json").read_bytes() == before


# --- random overrides -------------------------------------------------------------------------

OVERRIDES = {
    "model": st.sampled_from(["ae", "vae", "beta_vae", "cyclical_vae", "nope"]),
    "model/net": st.sampled_from(["mlp", "conv"]),
    "model.beta": st.one_of(st.floats(-2, 10, allow_nan=False), st.just("x")),
    "model.latent_dim": st.integers(-1, 6),
    "model.optimizer.lr": st.sampled_from([-1e-3, 0, 1e-4, 1e-2, "fast"]),
    "model.likelihood": st.sampled_from(
        ["bernoulli", "gaussian", "gaussian_learned", "poisson", "negative_binomial", "laplace"]
    ),
    "model.free_bits": st.sampled_from([-0.5, 0, 0.1]),
    "data.batch_size": st.integers(-2, 300),
    "data.binarize": st.sampled_from(["none", "dynamic", "static", "yes"]),
    "data.val_size": st.sampled_from([0.1, 0.5, 0.999, 2000, -1]),
    "trainer.precision": st.sampled_from(["32-true", "bf16-mixed", "16-mixed", "8"]),
    "model.betta": st.just(1),
}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.dictionaries(st.sampled_from(sorted(OVERRIDES)), st.just(None), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: OVERRIDES[k] for k in keys})
))  # fmt: skip
def test_random_overrides_train_one_step_or_give_a_one_line_error(compose_train, overrides):
    args = [f"{key}={value}" for key, value in overrides.items()]
    try:
        cfg = compose_train(*args, "debug=fdr", "callbacks.images=null", "logger=none")
        validate(cfg)
        results, _ = train(cfg)
    except Exception as error:  # noqa: BLE001 - the property is about what escapes
        user_error = _user_error(error)
        assert user_error is not None, f"{args}: a traceback, not a user error: {error!r}"
        assert "\n" not in one_line(user_error)
        return
    assert "test/loss" in results


def test_what_lightning_refuses_of_the_trainer_is_one_line(compose_train):
    """Keys without a rule of their own: Lightning's own check, as a config error."""
    cfg = compose_train("+trainer.overfit_batches=-3", "debug=fdr", "logger=none")
    with pytest.raises(ConfigError, match="the trainer.* settings were refused by Lightning: You"):
        train(cfg)
