"""KL control: the schedules, free bits, capacity annealing and the collapse diagnostics."""

import pytest
import torch

from tests.helpers import metrics_rows
from tests.test_resume import train as train_cli
from vaelab.errors import ConfigError
from vaelab.metrics import ActiveUnits, KLPerDimension
from vaelab.models.distributions import kl_per_dimension
from vaelab.models.kl_schedules import Capacity, Cyclical
from vaelab.models.kl_weighted import free_bits
from vaelab.train import train

CYCLICAL = Cyclical(beta=2.0, cycle_steps=100, n_cycles=2, ratio=0.5)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (25, 1.0), (50, 2.0), (99, 2.0), (100, 0.0), (125, 1.0), (150, 2.0), (199, 2.0),
     (200, 2.0), (10_000, 2.0)],
)  # fmt: skip
def test_cyclical_schedule(step, expected):
    assert CYCLICAL(step) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (15, 0.5), (30, 1.0), (59, 1.0), (60, 0.0), (90, 1.0), (180, 0.0), (195, 0.5),
     (239, 1.0), (240, 1.0)],
)  # fmt: skip
def test_cyclical_schedule_spans_the_run(step, expected):
    """Fu et al. (2019): M = 4 cycles over the run's T = 240 steps, rising over half of each."""
    schedule = Cyclical(beta=1.0, n_cycles=4, ratio=0.5).spanning(240)
    assert schedule(step) == pytest.approx(expected)
    assert schedule.warmup_end() == 210  # the last rise ends: 3.5 cycles of 60 steps


def test_cyclical_without_a_length_is_refused():
    with pytest.raises(ConfigError, match="set trainer.max_epochs or trainer.max_steps"):
        Cyclical(beta=1.0).spanning(float("inf"))


def test_the_cyclical_preset_cycles_within_a_default_length_digits_run(compose_train):
    cfg = compose_train("model=cyclical_vae", "logger=csv", "callbacks.images=null")
    assert cfg.trainer.max_epochs == 20  # the default run: 12 steps an epoch, 240 in all
    train(cfg)
    beta = [float(r["train/beta"]) for r in metrics_rows(cfg.paths.output_dir) if r["train/beta"]]
    rises = sum(b > a for a, b in zip(beta, beta[1:]))
    falls = sum(b < a for a, b in zip(beta, beta[1:]))
    assert falls == 3 and rises >= 4 and max(beta) == 1.0, beta


@pytest.mark.parametrize(("step", "expected"), [(0, 0.0), (50, 5.0), (100, 10.0), (150, 10.0)])
def test_capacity_target(step, expected):
    schedule = Capacity(beta=3.0, capacity=10.0, capacity_steps=100)
    assert schedule.target(step) == pytest.approx(expected)
    assert schedule(step) == 3.0


def test_free_bits_stop_the_gradient_below_the_floor():
    mu = torch.tensor([[0.1, 2.0], [-0.1, 1.0]], requires_grad=True)
    logvar = torch.zeros(2, 2, requires_grad=True)
    kl_dims = kl_per_dimension(mu, logvar)  # dim 0: 0.005 nats, dim 1: 1.25 nats
    free_bits(kl_dims, floor=0.5).backward()
    assert torch.all(mu.grad[:, 0] == 0) and torch.all(mu.grad[:, 1] != 0)
    assert free_bits(kl_dims.detach(), 0.5) == pytest.approx(0.5 + 1.25)


def test_free_bits_change_the_loss_not_the_logged_kl(compose_train):
    terms = []
    for floor in (0.0, 2.0):
        cfg = compose_train(f"model.free_bits={floor}")
        torch.manual_seed(0)
        model = __import__("hydra").utils.instantiate(cfg.model, input_shape=[1, 8, 8])
        model.eval()
        model.reseed_eval_noise()
        terms.append(model.terms(torch.rand(32, 1, 8, 8)))
    assert terms[0]["kl"] == terms[1]["kl"] and terms[0]["elbo"] == terms[1]["elbo"]
    assert terms[1]["loss"] > terms[0]["loss"]


def test_latent_metrics_accumulate_over_batches():
    torch.manual_seed(0)
    mu = torch.cat([torch.randn(100, 3), torch.zeros(100, 1)], 1)
    active = ActiveUnits(latent_dim=4)
    for part in mu.split(30):
        active.update(part)
    assert active.compute() == 3
    torch.testing.assert_close(active.variance().float(), mu.var(0, unbiased=False))
    per_dim = KLPerDimension(latent_dim=4)
    kl = torch.rand(100, 4)
    for part in kl.split(7):
        per_dim.update(part)
    torch.testing.assert_close(per_dim.compute(), kl.mean(0))


def test_capacity_annealing_holds_the_kl_at_the_target(compose_train):
    cfg = compose_train(
        "model=beta_vae_capacity",
        "model.kl_schedule.capacity=5",
        "model.kl_schedule.capacity_steps=300",
        "model.gamma=100",
        "data.batch_size=32",
        "trainer.max_epochs=20",
    )
    results, _ = train(cfg)
    rows = metrics_rows(cfg.paths.output_dir)
    val_kl = [float(r["val/kl"]) for r in rows if r["val/kl"]]
    capacity = [float(r["train/capacity"]) for r in rows if r["train/capacity"]]
    assert capacity[-1] == pytest.approx(5.0)
    # Once C has reached 5 nats (step 300, epoch 7), the KL stays within 1 nat of it.
    assert abs(sum(val_kl[-5:]) / 5 - 5.0) < 1.0, val_kl
    assert results["train/beta"] == 100.0


def test_a_larger_beta_leaves_fewer_active_units(compose_train):
    active = {}
    for beta in (0.5, 8.0):
        cfg = compose_train(f"model.beta={beta}", "data.batch_size=32", "trainer.max_epochs=10")
        results, objects = train(cfg)
        active[beta] = results["test/active_units"]
        assert objects["model"].last_kl_per_dim.shape == (8,)
    assert active[8.0] < active[0.5], active
    images = __import__("pathlib").Path(cfg.paths.output_dir) / "images"
    assert (images / "kl_per_dim.png").is_file()


def test_a_resume_continues_the_warmup_where_it_stopped(tmp_path, capfd, in_process):
    run_dir = tmp_path / "run"
    warmup = ["model/kl_schedule=linear", "model.kl_schedule.warmup_steps=100", "logger=csv"]
    code, out = train_cli(capfd, *warmup, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert code == 0, out[-3000:]
    code, out = train_cli(capfd, f"resume={run_dir}", "trainer.max_epochs=3")
    assert code == 0, out[-3000:]
    rows = [r for r in metrics_rows(run_dir) if r["train/beta"]]
    # beta = step / 100 in force at each logged step, through steps 24..35 after the resume,
    # not 0..11 again.
    steps = [int(r["step"]) for r in rows]
    assert [float(r["train/beta"]) for r in rows] == pytest.approx([s / 100 for s in steps])
    assert steps == [9, 19, 29]  # one row per window of 10 steps; the epoch means are not rows


@pytest.mark.parametrize(
    ("overrides", "warns"),
    [
        ([], False),  # healthy: 0, 0, 3, then 8 active units of 8
        (["model=beta_vae"], True),  # beta = 4 on 8x8 digits: 0 active units throughout
        # the same beta (a warm-up that starts at it), but a warm-up of 9999 steps is not over:
        # the warning waits for the schedule to reach its target
        (["model=beta_vae", "model/kl_schedule=linear", "model.kl_schedule.start=1",
          "model.kl_schedule.warmup_steps=9999"], False),
    ],
    ids=["healthy", "collapsed", "warming_up"],
)  # fmt: skip
def test_the_collapse_warning_comes_once_for_a_collapsed_run_only(
    compose_train, caplog, overrides, warns
):
    cfg = compose_train(
        "experiment=digits", *overrides, "trainer.max_epochs=6", "logger=none",
        "callbacks.images=null", "callbacks.collapse_monitor.patience=4",
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="vaelab.callbacks.collapse"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "posterior collapse" in r.getMessage()]
    assert len(warnings) == (1 if warns else 0), warnings
    if warns:
        assert warnings[0].startswith("posterior collapse: at the last 4 validations (to epoch 3)")
