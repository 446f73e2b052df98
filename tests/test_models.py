"""The LightningModules built from composed configs: one batch each, the loss identity, and the
checkpoint round trip."""

import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from tests.helpers import metrics_rows
from vaelab.config.instantiate import build
from vaelab.config.presets import one_preset_per_class
from vaelab.errors import ConfigError
from vaelab.models import (
    CVAE,
    DIPVAE,
    IWAE,
    VAE,
    VQVAE,
    WAE,
    AutoEncoder,
    BetaTCVAE,
    FactorVAE,
    InfoVAE,
)
from vaelab.train import train

DATASETS = {"digits": [], "fashion_mnist": ["data.val_size=50"]}
GAUSSIAN = {"loss", "recon", "kl", "elbo", "active_units", "nll_iw", "mi", "tc", "dim_kl"}
# The names of the test/* metrics each model class reports. The models come from conf/model/:
# a new one fails here until its metrics are written down.
TERMS = {
    AutoEncoder: {"loss", "recon"},
    VAE: GAUSSIAN,
    IWAE: GAUSSIAN | {"iw_elbo"},
    BetaTCVAE: GAUSSIAN,
    DIPVAE: GAUSSIAN | {"dip_od", "dip_d"},
    InfoVAE: GAUSSIAN | {"mmd"},
    WAE: {"loss", "recon", "mmd"},
    FactorVAE: GAUSSIAN | {"tc_discriminator"},
    VQVAE: {"loss", "recon", "commitment", "perplexity", "dead_codes"},
    CVAE: GAUSSIAN,
}
MODELS = one_preset_per_class()


def _build(cfg):
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule, instantiate(cfg.model, input_shape=list(datamodule.shape))


def test_vae_loss_is_negative_elbo_at_beta_one(compose_train):
    _, model = _build(compose_train("model.beta=1.0"))
    x = torch.rand(16, 1, 8, 8)
    terms = model.terms(x)
    torch.testing.assert_close(terms["loss"], -terms["elbo"])
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))


def test_beta_weights_the_kl(compose_train):
    _, model = _build(compose_train("model.beta=4.0"))
    torch.manual_seed(0)
    terms = model.terms(torch.rand(16, 1, 8, 8))
    torch.testing.assert_close(terms["loss"], terms["recon"] + 4.0 * terms["kl"])
    assert terms["beta"] == 4.0


def test_linear_warmup_follows_the_global_step(compose_train):
    cfg = compose_train("model/kl_schedule=linear", "model.kl_schedule.warmup_steps=10")
    cfg.trainer.max_steps = 5
    results, objects = train(cfg)
    # The weight in force at the last logged step: steps 0..4 of a ramp over 10.
    assert objects["model"].kl_schedule(objects["trainer"].global_step) == pytest.approx(0.5)
    assert 0.0 < results["train/beta"] < 0.5


def test_training_terms_are_logged_once_per_step_under_accumulation(compose_train):
    cfg = compose_train("logger=csv", "trainer.log_every_n_steps=1")
    cfg.trainer.accumulate_grad_batches, cfg.trainer.max_steps = 2, 6
    train(cfg)
    steps = [int(r["step"]) for r in metrics_rows(cfg.paths.output_dir) if r["train/loss"]]
    # Six optimizer steps of two batches each; the epoch's mean is not a row of its own.
    assert steps == list(range(6))


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("net", ["mlp", "conv"])
@pytest.mark.parametrize("model_name", MODELS)
def test_each_model_net_and_dataset_trains_one_batch(
    compose_train, mnist_dir, model_name, net, dataset
):
    overrides = [f"model={model_name}", f"model/net={net}", f"data={dataset}", *DATASETS[dataset]]
    cfg = compose_train(*overrides, f"data.data_dir={mnist_dir}", "debug=fdr")
    if net == "conv" and dataset == "digits":
        with pytest.raises(ConfigError, match="needs height and width .* but the data is 8x8"):
            train(cfg)
        return
    results, objects = train(cfg)
    model_class = type(objects["model"])
    assert model_class in TERMS, f"{model_class.__name__}: add the test/* metrics it reports"
    assert torch.isfinite(torch.tensor(results["test/loss"]))
    assert {k.split("/")[1] for k in results if k.startswith("test/")} == TERMS[model_class]


def test_checkpoint_round_trip_and_weights_only(compose_train):
    cfg = compose_train("trainer.max_epochs=1")
    results, objects = train(cfg)
    model = objects["model"].eval()
    path = results["best_ckpt"]
    checkpoint = torch.load(path, weights_only=True)  # plain containers only
    assert checkpoint["hyper_parameters"]["net"]["hidden"] == [512, 256]
    loaded = VAE.load_from_checkpoint(path).eval()
    model.load_state_dict(checkpoint["state_dict"])  # the weights of the best epoch
    x = torch.rand(8, 1, 8, 8)
    torch.testing.assert_close(loaded(x).mean, model(x).mean)
    q = loaded.encode(x)  # q(z|x): a distribution over latent vectors, one per example
    assert q.batch_shape == (8,) and q.event_shape == (cfg.model.latent_dim,)
    assert q.log_prob(q.rsample((3,))).shape == (3, 8)
    p = loaded.decode(q.mean)  # p(x|z): a distribution over examples
    assert p.batch_shape == (8,) and p.event_shape == (1, 8, 8) and p.mean.shape == (8, 1, 8, 8)
    assert p.log_prob(x).shape == (8,) and loaded.decode(q.rsample((3,))).log_prob(x).shape == (
        3,
        8,
    )


def test_autoencoder_checkpoint_loads_with_no_arguments(compose_train):
    results, objects = train(compose_train("model=ae", "trainer.max_epochs=1"))
    loaded = AutoEncoder.load_from_checkpoint(results["best_ckpt"]).eval()
    x = torch.rand(4, 1, 8, 8)
    assert loaded.encode(x).shape == (4, 8)
    assert loaded.hparams.monitor == "val/recon"


def test_any_torch_activation_works(compose_train):
    _, model = _build(compose_train("model.net.activation=sigmoid"))
    assert any(isinstance(m, torch.nn.Sigmoid) for m in model.encoder)
    with pytest.raises(Exception, match="not a torch.nn activation"):
        _build(compose_train("model.net.activation=relux"))


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_the_classic_neuron_is_a_sigmoid_of_the_given_slope(compose_train, net):
    """phi(sum_i x_i w_i) with phi(x) = 1 / (1 + e^(-beta x)): every activation module of the net
    computes that, with beta a constant rather than a weight."""
    cfg = compose_train(f"model/net={net}", "model.net.activation=sigmoid", "model.net.slope=2.5")
    model = instantiate(cfg.model, input_shape=[1, 28, 28] if net == "conv" else [1, 8, 8])
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    activations = [m for m in model.modules() if type(m).__name__ == "SlopedSigmoid"]
    assert len(activations) >= 4  # encoder and decoder
    for activation in activations:
        assert torch.allclose(activation(x), 1 / (1 + torch.exp(-2.5 * x)))
    assert not any("slope" in name for name, _ in model.named_parameters())
    with pytest.raises(ConfigError, match="model.net.slope=2.5 is the slope of the classic"):
        build(compose_train("model.net.slope=2.5").model, input_shape=[1, 8, 8])


@pytest.mark.parametrize("model_name", ["ae", "vae"])
def test_every_model_embeds_x_the_same_way(compose_train, model_name):
    """embed(x): h for an AE, the posterior mean for a VAE; (B, latent_dim) for both."""
    model = instantiate(compose_train(f"model={model_name}").model, input_shape=[1, 8, 8]).eval()
    x = torch.rand(5, 1, 8, 8)
    code = model.encode(x)
    assert torch.equal(model.embed(x), code.mean if model_name == "vae" else code)
    assert model.embed(x).shape == (5, 8)


def test_optimizer_and_scheduler_are_partials(compose_train):
    cfg = compose_train("model/optimizer=sgd", "model/scheduler=cosine", "model.optimizer.lr=0.05")
    _, model = _build(cfg)
    model.trainer = L.Trainer(max_epochs=1, logger=False)
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["optimizer"].param_groups[0]["lr"] == 0.05
    assert isinstance(
        config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR
    )


@pytest.mark.parametrize("model_name", ["ae", "vae"])
def test_bf16_mixed_precision_on_cpu(compose_train, model_name):
    cfg = compose_train(f"model={model_name}", "trainer.precision=bf16-mixed", "debug=limit")
    results, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed"
    assert all(torch.isfinite(torch.tensor(v)) for k, v in results.items() if k.startswith("test/"))


def test_binarised_data_reports_bits_per_dimension(compose_train):
    results, _ = train(compose_train("data.binarize=dynamic", "debug=limit"))
    assert results["test/bpd"] == pytest.approx(results["test/nll_iw"] / (64 * math.log(2)))
    grey, _ = train(compose_train("debug=limit"))
    assert "test/bpd" not in grey


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"likelihood": "laplace"}, "model.likelihood='laplace': must be one of"),
        ({"latent_dim": 0}, "model.latent_dim=0: must be an integer >= 1"),
        ({"beta": -1.0}, "model.beta=-1.0: must be >= 0"),
        (
            {"kl_schedule": {"_target_": "vaelab.models.kl_schedules.LinearWarmup",
                             "warmup_steps": 0}},
            "model.kl_schedule.warmup_steps=0: must be an integer >= 1",
        ),
    ],
)  # fmt: skip
def test_a_model_built_in_python_is_held_to_the_config_rules(arguments, message):
    net = {"_target_": "vaelab.models.nets.mlp", "hidden": [8]}
    common = {"input_shape": [1, 8, 8], "latent_dim": 2, "net": net, "optimizer": {}}
    with pytest.raises(ConfigError, match=message):
        VAE(**common | arguments)


def test_every_model_is_at_most_two_levels_below_the_base():
    """Models are siblings over the plumbing (Model) or over the latent-variable base
    (VariationalModel): what several share is a part, not a parent."""
    from hydra.utils import get_class

    from vaelab.config.presets import model_presets
    from vaelab.models import Model

    for preset, target in model_presets().items():
        ancestors = [k for k in get_class(target).__mro__ if issubclass(k, Model)]
        assert len(ancestors) <= 3, f"{preset}: {[k.__name__ for k in ancestors]}"


def test_evaluation_terms_are_means_over_every_example_of_the_split(compose_train):
    """Batches of 64 leave a short last one in both splits: the logged value is the mean over
    the examples, as one batch holding the whole split gives it (a deterministic AE)."""
    cfg = compose_train("model=ae", "data.batch_size=64", "trainer.max_epochs=1", "logger=none")
    results, objects = train(cfg)
    model, datamodule = objects["model"].eval(), objects["datamodule"]
    for split in ("val", "test"):
        x = torch.cat([batch[0] for batch in getattr(datamodule, f"{split}_dataloader")()])
        assert len(x) % 64, "the split should end with a short batch"
        with torch.no_grad():
            whole = model.terms(x)["recon"].item()
        assert results[f"{split}/recon"] == pytest.approx(whole, rel=1e-5)


def test_the_model_table_script_trains_tests_and_probes_each_row(tmp_path, capfd):
    """scripts/model_table.py (docs/guides/models.md), on Fashion-MNIST-like files: a row per
    preset with its own overrides, the table on stdout and the same numbers as JSON; an AE has
    no ELBO, a VAE has every column."""
    import json
    from pathlib import Path

    from tests.conftest import one_line_error, run_here, write_mnist_like

    data = write_mnist_like(tmp_path / "fashion", n_train=5100)  # 5,000 of them validate
    script = Path(__file__).parents[1] / "scripts" / "model_table.py"
    rows = ["ae", "vae model/prior=vamp model.prior.pseudo_inputs=10"]
    result = run_here(
        [str(script), "--models", *rows, "--data-dir", str(data), "--iw", "2",
         "--out", str(tmp_path / "table.json")],
        tmp_path, capfd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads((tmp_path / "table.json").read_text())
    assert list(table) == rows
    assert table["ae"]["test/elbo"] is None and math.isfinite(table["ae"]["test/recon"])
    vae = table[rows[1]]
    assert all(math.isfinite(vae[key]) for key in ("test/elbo", "test/nll_iw", "seconds"))
    assert 0.0 <= vae["test/linear_probe_acc"] <= 1.0
    ae_line, vae_line = result.stdout.splitlines()[-2:]  # the table's rows, as the JSON's
    assert ae_line.startswith("| `ae` | — |")
    assert vae_line.startswith(f"| `{rows[1]}` | {vae['test/elbo']:.1f} |")
    # A row that names no preset is one line, as the command's.
    refused = run_here([str(script), "--models", "vea", "--data-dir", str(data)], tmp_path, capfd)
    assert "Could not find 'model/vea'" in one_line_error(refused.returncode, refused.stderr)
