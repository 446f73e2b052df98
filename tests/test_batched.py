"""Members of a sweep trained as one stacked model (vaelab.batched): a stacked step is each
member's own step."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from sklearn.datasets import load_digits

import vaelab
from tests.conftest import cli, console, console_here, one_line_error
from tests.helpers import assert_same_run, assert_same_tensors, last_step, metrics_rows
from tests.test_cli import VAELAB_TRAIN, run
from tests.test_sweep import QUICK
from vaelab.batched import Stack
from vaelab.batched.groups import groups, member_arguments
from vaelab.config.presets import model_presets, one_preset_per_class
from vaelab.errors import ConfigError
from vaelab.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
# One preset per class that trains stacked, and what its members may differ in: for each of
# its member_arguments, each member's overrides (with what all need for it to act).
CLASSES = {preset: get_class(model_presets()[preset]) for preset in one_preset_per_class()}
PRESETS = [preset for preset, cls in CLASSES.items() if member_arguments(cls) is not None]
PER_MEMBER = {
    "sigma": (
        ["data.likelihood=gaussian"],
        ["model.sigma=0.1", "model.sigma=0.5", "model.sigma=1"],
    ),
    "beta": ([], ["model.beta=0.5", "model.beta=4", "model.beta=1"]),
    "free_bits": ([], ["model.free_bits=0", "model.free_bits=0.5", "model.free_bits=2"]),
    "gamma": (
        ["model/kl_schedule=capacity"],
        ["+model.gamma=1", "+model.gamma=10", "+model.gamma=100"],
    ),
    "kl_schedule": (
        [],
        [
            "model/kl_schedule=constant",
            "model/kl_schedule=linear model.kl_schedule.warmup_steps=10",
            "model/kl_schedule=linear model.kl_schedule.warmup_steps=3",
        ],
    ),
    "dip_type": ([], ["model.dip_type=i", "model.dip_type=ii", "model.dip_type=i"]),
    "lambda_od": ([], ["model.lambda_od=1", "model.lambda_od=10", "model.lambda_od=30"]),
    "lambda_d": ([], ["model.lambda_d=null", "model.lambda_d=1", "model.lambda_d=50"]),
    "alpha": ([], ["model.alpha=0", "model.alpha=0.5", "model.alpha=-1"]),
    "lambda_mmd": ([], ["model.lambda_mmd=1", "model.lambda_mmd=100", "model.lambda_mmd=1000"]),
}
SEEDS = [1, 2, 3]
CASES = [
    (preset, argument)
    for preset in PRESETS
    for argument in sorted(member_arguments(CLASSES[preset]))
]


def _members(compose_train, preset: str, argument: str | None = None, *overrides: str) -> list:
    """Three members of `preset`, each with its own seed and, for `argument`, its own value."""
    shared, own = PER_MEMBER[argument] if argument else ([], [""] * len(SEEDS))
    members = []
    for seed, value in zip(SEEDS, own, strict=True):
        cfg = compose_train(f"model={preset}", *shared, *value.split(), *overrides)
        if "dataset_size" in cfg.model:
            cfg.model.dataset_size = 1797
        torch.manual_seed(seed)  # each member's own initialisation
        members.append(instantiate(cfg.model, input_shape=[1, 8, 8]))
    return members


def _batches(steps: int, members: int, size: int = 16):
    """Digits in [0, 1] with their labels: each member its own batches, (members, size, ...)."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for step in range(steps):
        idx = order[step * members * size : (step + 1) * members * size].view(members, size)
        yield x[idx], torch.tensor(y)[idx]


@pytest.mark.parametrize(("preset", "argument"), CASES)
def test_a_stacked_step_is_each_members_own_step(compose_train, preset, argument):
    """Three members, with their own seeds and values of one of their `member_arguments`, take
    five steps apart, each on its own batches and noise, and the same five steps stacked: the
    same losses and weights, to float32's precision. Plain SGD: the steps are the gradients
    themselves (Adam divides each gradient by its own scale, so that one near zero, summed in
    another order by the batched products, would move its weight by up to the learning rate
    either way; the next test covers Adam)."""
    members = _members(compose_train, preset, argument)
    apart = [copy.deepcopy(m) for m in members]
    stack = Stack(members)
    stacked_opt = torch.optim.SGD(stack.parameters(), lr=1e-3)
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in apart]
    for x, y in _batches(5, len(members)):
        y = y if members[0].conditional else None
        noise = stack.noise(x)
        losses = stack.losses(stack.per_example(x, noise, y))
        stacked_opt.zero_grad()
        sum(terms["loss"] for terms in losses).backward()
        stacked_opt.step()
        for i, (model, opt) in enumerate(zip(apart, opts, strict=True)):
            condition = {"y": y[i]} if y is not None else {}
            terms = model.losses(model.per_example(x[i], *(part[i] for part in noise), **condition))
            # atol: a loss that is a small difference of large terms (InfoVAE's 999 x MMD
            # beside a Gaussian recon) keeps their rounding.
            stacked_loss = losses[i]["loss"].detach()
            torch.testing.assert_close(stacked_loss, terms["loss"], rtol=1e-5, atol=1e-3)
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
    stack.unstack()
    for i, (model, alone) in enumerate(zip(members, apart, strict=True)):
        for name, value in alone.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, msg=f"member {i}: {name}")


def test_one_adam_over_the_stack_takes_each_members_adam_step():
    """Adam, with weight decay, over stacked parameters given the members' gradients stacked:
    each member's slice moves as its own Adam moves it."""
    generator = torch.Generator().manual_seed(0)
    alone = [torch.randn(5, 3, generator=generator, requires_grad=True) for _ in range(4)]
    stacked = torch.stack([w.detach() for w in alone]).requires_grad_()
    opts = [torch.optim.AdamW([w], lr=0.1, weight_decay=0.1) for w in alone]
    stacked_opt = torch.optim.AdamW([stacked], lr=0.1, weight_decay=0.1)
    for _ in range(5):
        grads = [torch.randn(5, 3, generator=generator) * scale for scale in (1e-8, 1, 10, 1e3)]
        for w, grad, opt in zip(alone, grads, opts, strict=True):
            w.grad = grad
            opt.step()
        stacked.grad = torch.stack(grads)
        stacked_opt.step()
    torch.testing.assert_close(stacked.detach(), torch.stack(alone).detach(), rtol=0, atol=0)


def test_members_of_other_shapes_or_classes_are_refused(compose_train):
    vae = _members(compose_train, "vae")[0]
    wider = _members(compose_train, "vae", None, "model.latent_dim=4")[0]
    with pytest.raises(ConfigError, match="differ in the shape of .*latent_dim, the net"):
        Stack([vae, wider])
    with pytest.raises(ConfigError, match="classes VAE and AutoEncoder"):
        Stack([vae, _members(compose_train, "ae")[0]])


def test_the_sweep_benchmark_trains_the_members_apart_and_stacked_to_the_same_elbos(
    tmp_path, monkeypatch
):
    """`scripts/benchmark.py --sweep` (without the launcher's sweep, which it runs as a
    process): 8 members, 40 steps each, apart and stacked on the same batches and noise; each
    stacked member's test ELBO that of its twin apart."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    monkeypatch.chdir(tmp_path)
    import benchmark

    small = ["--hidden", "64", "--latent", "8", "--batch-size", "32", "--limit", "640"]
    table = benchmark.main(["--sweep", "--no-basic", "--epochs", "2", *small, "--out", "t.json"])
    assert set(table) == {"apart", "stacked"}
    assert json.loads((tmp_path / "t.json").read_text())["stacked"]["seconds"] > 0
    apart, stacked = table["apart"]["test_elbos"], table["stacked"]["test_elbos"]
    assert len(apart) == len(stacked) == 8
    for alone, together in zip(apart, stacked, strict=True):
        assert alone == pytest.approx(together, abs=0.05)
    assert table["stacked"]["speedup_over_apart"] == pytest.approx(
        table["apart"]["seconds"] / table["stacked"]["seconds"]
    )


def test_every_member_argument_has_values_to_test_it_with():
    declared = set().union(*(member_arguments(CLASSES[preset]) for preset in PRESETS))
    assert declared <= set(PER_MEMBER), declared - set(PER_MEMBER)
    assert {cls.__name__ for cls in CLASSES.values() if member_arguments(cls) is None} == {
        "FactorVAE",
        "VQVAE",
    }


def test_jobs_that_differ_in_seeds_and_loss_weights_share_a_stack_and_others_do_not():
    from vaelab.models import DIPVAE, VAE, VQVAE

    class Mine(VAE):  # a user's model that does not say what its members may differ in
        pass

    jobs = [
        (["model=vae", "model.beta=0.5", "seed=1"], VAE),
        (["model=vae", "model.beta=4", "seed=1"], VAE),
        (["model=vae", "model.latent_dim=4", "seed=1"], VAE),  # another shape
        (["model=vae", "model.beta=0.5", "seed=2"], VAE),
        (["model=vae", "model/kl_schedule=linear", "seed=3"], VAE),
        (["model=vq_vae", "seed=1"], VQVAE),
        # Each member's own optimizer steps its own parameters.
        (["model=vae", "model.optimizer.lr=0.01", "trainer.gradient_clip_val=1", "seed=1"], VAE),
        (["model=dip_vae", "model.lambda_od=5", "seed=1"], DIPVAE),
        (["model=dip_vae", "model.lambda_od=50", "seed=2"], DIPVAE),
        (["model=vq_vae", "seed=2"], VQVAE),
        (["model=mine", "model.beta=2"], Mine),
    ]
    found, notes = groups(jobs, max_members=3)
    assert [(g.jobs, g.stacked) for g in found] == [
        ([0, 1, 3], True),
        ([4, 6], True),  # the fourth and fifth members of the first: max_members=3
        ([2], True),
        ([5], False),
        ([7, 8], True),
        ([9], False),
        ([10], False),
    ]
    assert notes == [
        "jobs 5, 9: VQVAE does not train stacked (it declares no member_arguments); they run "
        "one at a time",
        "job 10: Mine does not train stacked (it declares no member_arguments); it runs one at "
        "a time",
    ]


# --- hydra/launcher=batched ------------------------------------------------------------------

LAUNCHED = ["trainer.max_epochs=2", "model.beta=0.5,2", "seed=1,2"]


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory) -> Path:
    """The sweep of LAUNCHED through Hydra's basic launcher: each job a lone run."""
    folder = tmp_path_factory.mktemp("basic")
    with console_here(folder):
        assert console(train_main, ["-m", *QUICK, *LAUNCHED, f"hydra.sweep.dir={folder}"]) == 0
    return folder


def _assert_lone_runs(
    sweep: Path, reference: Path, jobs: int, records: bool = True, rtol: float = 1e-4
) -> None:
    """Each job's directory is the one its lone run wrote, to float32's rounding: the same
    metrics.csv rows and values, weights and results, and (`records`: one run of the same
    command) the same records of the job and log lines."""
    for job in map(str, range(jobs)):
        ours, theirs = sweep / job, reference / job
        assert_same_run(ours, theirs, rtol=rtol)
        for name in ("overrides.yaml", "config.yaml") if records else ():
            assert (ours / ".hydra" / name).read_text().replace(str(sweep), "") == (
                theirs / ".hydra" / name
            ).read_text().replace(str(reference), "")
        results = [json.loads((d / "results.json").read_text()) for d in (ours, theirs)]
        numbers = [{k: v for k, v in r.items() if isinstance(v, float)} for r in results]
        assert_same_tensors(*numbers, "results.json", rtol=rtol)
        best = vaelab.load(ours / "checkpoints" / "best.ckpt")  # a single model, as alone
        assert type(best).__name__ == "VAE" and best.seat is None
        lines = [_log_lines(d / "train.log", s) for d, s in ((ours, sweep), (theirs, reference))]
        assert lines[0] == lines[1] or not records
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())


def _log_lines(path: Path, sweep: Path) -> list[str]:
    """A train.log's lines without their times and paths, numbers as # (the values are
    compared to float32's rounding in metrics.csv and results.json)."""
    return [re.sub(r"-?\d[\d.e+-]*", "#", line.split("] - ", 1)[-1].replace(str(sweep), ""))
            for line in path.read_text().splitlines()]  # fmt: skip


@pytest.mark.parametrize("stack", ["true", "false"])
def test_a_batched_sweep_writes_each_jobs_lone_run(tmp_path, basic_sweep, capfd, in_process, stack):
    """Stacked (vmapped over the members' weights, as on a GPU) and apart (a CPU's default)."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=batched", f"hydra.launcher.stack={stack}", *QUICK, *LAUNCHED,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 0, out[-3000:]
    _assert_lone_runs(sweep, basic_sweep, jobs=4, rtol=1e-4 if stack == "true" else 0)
    rows = [metrics_rows(s, "sweep.csv") for s in (sweep, basic_sweep)]
    assert [r["overrides"] for r in rows[0]] == [r["overrides"] for r in rows[1]]
    assert [r["status"] for r in rows[0]] == ["COMPLETED"] * 4
    assert "Launching jobs, 8 at most trained together" in out
    assert "Training #0, #1, #2, #3 together" in out
    assert out.count(" COMPLETED · val/elbo ") == 4 and "Sweep summary" in out


def test_a_killed_batched_sweep_started_again_continues_every_member(tmp_path, basic_sweep):
    """SIGKILL once the first member reaches step 15 (each has its epoch-0 checkpoint); the
    same command again continues every member from its own checkpoint, to the lone runs."""
    sweep = tmp_path / "sweep"
    kill = ["+callbacks.kill._target_=tests.helpers.StopAt", "+callbacks.kill.by=SIGKILL",
            "+callbacks.kill.step=15", f"+callbacks.kill.flag={tmp_path / 'killed'}"]  # fmt: skip
    command = [VAELAB_TRAIN, "-m", "hydra/launcher=batched", *QUICK, *LAUNCHED, *kill,
               f"hydra.sweep.dir={sweep}"]  # fmt: skip
    env = {"PYTHONPATH": str(ROOT)}
    first = run(command, cwd=tmp_path, env=env)
    assert first.returncode == -9, first.stderr[-3000:]
    assert not list(sweep.glob("*/results.json"))
    second = run(command, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("Continuing the unfinished job") == 4
    for job in map(str, range(4)):  # each validation logged once
        assert [int(r["step"]) for r in metrics_rows(sweep / job) if r["val/elbo"]] == [11, 23]
    _assert_lone_runs(sweep, basic_sweep, jobs=4, records=False, rtol=0)


def test_sigterm_stops_every_member_as_a_lone_run_and_the_same_command_finishes(
    tmp_path, basic_sweep, capfd, in_process
):
    """SIGTERM (a scheduler's pre-emption) once the first member reaches step 15: every member
    stops at its next batch with last.ckpt written, the sweep exits 143 saying how to finish it;
    the same command finishes every member, to the lone runs."""
    sweep = tmp_path / "sweep"
    stop = ["+callbacks.stop._target_=tests.helpers.StopAt", "+callbacks.stop.step=15",
            f"+callbacks.stop.flag={tmp_path / 'stopped'}"]  # fmt: skip
    args = ["-m", "hydra/launcher=batched", *QUICK, *LAUNCHED, *stop, f"hydra.sweep.dir={sweep}"]
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 143, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("error: stopped by SIGTERM")
    assert f"starting the same command again with hydra.sweep.dir={sweep}" in out
    assert all(15 <= last_step(sweep / job) < 24 for job in map(str, range(4)))
    assert not list(sweep.glob("*/results.json"))
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 0, out[-3000:]
    _assert_lone_runs(sweep, basic_sweep, jobs=4, records=False, rtol=0)


def test_a_diverging_member_stops_alone(tmp_path, capfd, in_process):
    """Member 1's weights turn to NaN at step 15: it stops with the divergence message, its
    checkpoints the good ones; member 0 trains on to the end, as alone."""
    sweep = tmp_path / "sweep"
    poison = ["+callbacks.poison._target_=tests.helpers.PoisonWeights",
              "+callbacks.poison.step=100000,15"]  # fmt: skip
    args = ["-m", "hydra/launcher=batched", *QUICK, "trainer.max_epochs=2", *poison,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 1, out[-3000:]
    assert "#1 FAILED: training diverged by step" in out and "#0 COMPLETED" in out
    rows = metrics_rows(sweep, "sweep.csv")
    assert [r["status"] for r in rows] == ["COMPLETED", "FAILED"]
    assert (sweep / "0" / "results.json").is_file() and not (sweep / "1" / "results.json").exists()
    assert last_step(sweep / "0") == 24 and last_step(sweep / "1") == 12


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("hparams_search=vae_optuna", "hparams_search runs its trials inside one job"),
        ("trainer.devices=2", "give trainer.devices=1 trainer.num_nodes=1"),
        ("logger=wandb", "does not log to W&B yet"),
    ],
)
def test_what_the_batched_launcher_cannot_run_is_refused_in_one_line(
    tmp_path, capsys, in_process, override, said
):
    args = ["-m", "hydra/launcher=batched", *QUICK, "seed=1,2", override,
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    assert said in one_line_error(*cli(train_main, args, capsys))
    assert not list((tmp_path / "sweep").glob("*/config.yaml"))


def test_each_member_of_a_batched_sweep_is_an_mlflow_run_of_its_own(tmp_path, capfd, in_process):
    from mlflow.tracking import MlflowClient

    sweep, store = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", "hydra/launcher=batched", *QUICK, "logger=mlflow", "seed=1,2",
            "trainer.max_epochs=1", f"logger.mlflow.tracking_uri={store}",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 0, out[-3000:]
    client = MlflowClient(store)
    for job, seed in (("0", "1"), ("1", "2")):
        run = client.get_run((sweep / job / "mlflow_id").read_text().strip())
        assert run.info.status == "FINISHED" and run.data.params["seed"] == seed
        logged = [m.value for m in client.get_metric_history(run.info.run_id, "val/elbo")]
        results = json.loads((sweep / job / "results.json").read_text())
        assert logged == [pytest.approx(results["val/elbo"])]  # its own, one epoch
