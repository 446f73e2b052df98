"""Priors and the distributions a model hands out, against their formulas computed a second way
(torch.distributions in float64, written out by hand), and the prior choices through Hydra."""

import copy
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import distributions as D

from vaelab.config.compose import compose
from vaelab.data import DigitsDataModule
from vaelab.errors import ConfigError
from vaelab.metrics import iw_log_likelihood
from vaelab.models import CVAE, IWAE, VAE
from vaelab.models.distributions import DiagonalGaussian
from vaelab.train import train

NET = {"_target_": "vaelab.models.nets.mlp", "hidden": [16]}
COMMON = {"input_shape": [1, 4, 4], "latent_dim": 3, "net": NET, "optimizer": {}}
PRIORS = {
    "standard": {"_target_": "vaelab.models.priors.StandardNormal"},
    "vamp": {"_target_": "vaelab.models.priors.VampPrior", "pseudo_inputs": 4},
    "mog": {"_target_": "vaelab.models.priors.MixtureOfGaussians", "components": 3},
}


def _model(cls, prior: str, **kwargs):
    torch.manual_seed(0)
    model = cls(prior=PRIORS[prior], **COMMON, **kwargs)
    if prior == "mog":  # apart from their start, so that the mixture is not one Gaussian
        with torch.no_grad():
            model.prior.logits.copy_(torch.tensor([0.5, -1.0, 0.2]))
            model.prior.logvar.copy_(torch.randn(3, 3) * 0.5)
    return model


def _log_prior_64(model, z: torch.Tensor) -> torch.Tensor:
    """log p(z) in float64, from the prior's definition."""
    z = z.double()
    prior = model.prior
    if type(prior).__name__ == "StandardNormal":
        return D.Normal(0.0, 1.0).log_prob(z).sum(-1)
    if type(prior).__name__ == "VampPrior":
        # The posteriors of the pseudo-inputs, from the encoder's two heads.
        mu, logvar = model.encoder(prior.pseudo_inputs).double().chunk(2, 1)
        weights = torch.full((len(mu),), 1 / len(mu), dtype=torch.float64)
    else:
        mu, logvar = prior.loc.double(), prior.logvar.double()
        weights = prior.logits.double().softmax(0)
    components = D.Independent(D.Normal(mu, (0.5 * logvar.clamp(-30, 20)).exp()), 1)
    return D.MixtureSameFamily(D.Categorical(weights), components).log_prob(z)


def _posterior_64(model, x: torch.Tensor) -> D.Distribution:
    mu, logvar = model.encoder(x).double().chunk(2, 1)
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def test_the_gaussian_posterior_kl_against_the_standard_prior_is_the_closed_form():
    model = _model(VAE, "standard")
    x, eps = torch.rand(6, 1, 4, 4).bernoulli(), torch.randn(6, 3)
    out = model.per_example(x, eps)
    mu, logvar = model.encoder(x).chunk(2, 1)
    by_hand = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)  # Kingma & Welling, appendix B
    torch.testing.assert_close(out["kl_dims"], by_hand)
    torch.testing.assert_close(out["kl"], by_hand.sum(1))
    # Against any diagonal Gaussian prior, the pair's KL that torch registers agrees with torch's.
    q = DiagonalGaussian(mu, logvar)
    p = DiagonalGaussian(torch.randn(3), torch.randn(3))
    expected = D.kl_divergence(
        D.Normal(mu, (0.5 * logvar).exp()), D.Normal(p.loc, (0.5 * p.logvar).exp())
    ).sum(1)
    torch.testing.assert_close(D.kl_divergence(q, p), expected)


@pytest.mark.parametrize("prior", ["vamp", "mog"])
def test_the_kl_against_a_mixture_is_the_sample_estimate_in_float64(prior):
    model = _model(VAE, prior)
    x, eps = torch.rand(6, 1, 4, 4).bernoulli(), torch.randn(6, 3)
    out = model.per_example(x, eps)
    assert "kl_dims" not in out  # a mixture has no KL per dimension
    z = out["z"].detach()
    expected = _posterior_64(model, x).log_prob(z.double()) - _log_prior_64(model, z)
    torch.testing.assert_close(out["kl"].double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.prior.log_prob(z).double(), _log_prior_64(model, z))
    # Any number of leading sample dimensions.
    assert model.prior.log_prob(torch.randn(5, 6, 3)).shape == (5, 6)


@pytest.mark.parametrize("prior", ["standard", "vamp", "mog"])
@pytest.mark.parametrize("cls", [VAE, CVAE])
def test_nll_iw_is_a_log_mean_exp_over_the_same_draws(cls, prior):
    model = _model(cls, prior).eval()
    x, k = torch.rand(5, 1, 4, 4).bernoulli(), 12
    y = torch.tensor([0, 1, 2, 3, 4]) if cls is CVAE else None
    got = iw_log_likelihood(model, x, k, torch.Generator().manual_seed(3), y=y)

    with torch.no_grad():
        eps = torch.randn((k, 5, 3), generator=torch.Generator().manual_seed(3))  # one chunk
        h = model.encoder(x)
        if y is not None:
            h = h + model.encoder_label.weight.T[y]
        mu, logvar = h.chunk(2, 1)
        z = mu + (0.5 * logvar).exp() * eps  # (K, B, Z)
        rows = z if y is None else torch.cat([z, model.one_hot(y, 5).expand(k, 5, -1)], -1)
        logits = model.decoder(rows.flatten(0, 1)).view(k, 5, 1, 4, 4)
        log_px_z = D.Bernoulli(logits=logits.double()).log_prob(x.double()).sum((2, 3, 4))
        q = D.Independent(D.Normal(mu.double(), (0.5 * logvar.double()).exp()), 1)
        log_w = log_px_z + _log_prior_64(model, z) - q.log_prob(z.double())
        expected = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("prior", ["standard", "vamp", "mog"])
def test_the_iwae_bound_reads_the_prior(prior):
    model = _model(IWAE, prior, k=4)
    x, eps = torch.rand(6, 1, 4, 4).bernoulli(), torch.randn(4, 6, 3)
    terms = model.losses(model.per_example(x, eps))
    with torch.no_grad():
        q = _posterior_64(model, x)
        z = q.mean + q.stddev * eps.double()
        logits = model.decoder(z.float().flatten(0, 1)).view(4, 6, 1, 4, 4).double()
        log_px_z = D.Bernoulli(logits=logits).log_prob(x.double()).sum((2, 3, 4))
        log_w = log_px_z + _log_prior_64(model, z) - q.log_prob(z)
        bound = (torch.logsumexp(log_w, 0) - math.log(4)).mean()
    torch.testing.assert_close(terms["iw_elbo"].double(), bound, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("prior", ["standard", "vamp", "mog"])
def test_samples_and_traversals_come_from_the_prior(prior):
    model = _model(VAE, prior).eval()
    draws = model.prior.sample(20_000, torch.Generator().manual_seed(0))
    assert draws.shape == (20_000, 3)
    # The draws follow log_prob: their mean log-density is the prior's negative entropy, which
    # a wrong sampler (another mixture, N(0, I) for a mixture) misses by far more than this.
    shifted = draws + 0.5
    assert model.prior.log_prob(draws).mean() > model.prior.log_prob(shifted).mean() + 0.05
    low, high = model.prior.traversal_range(3.0)
    inside = ((draws >= low) & (draws <= high)).float().mean(0)
    assert (inside > 0.97).all()
    if prior == "standard":
        assert torch.equal(low, torch.full((3,), -3.0)) and torch.equal(high, torch.full((3,), 3.0))
        generator = torch.Generator().manual_seed(0)
        assert torch.equal(
            model.prior.sample(4, generator),
            torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
        )
    assert model.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 4, 4)


def test_the_pseudo_inputs_start_at_training_examples():
    model = instantiate(
        compose("model/prior=vamp", "model.prior.pseudo_inputs=6", check=False).model,
        input_shape=[1, 8, 8],
    )
    data = DigitsDataModule()
    data.setup()
    model.check_data(data)
    train_x = data.splits["train"][0].flatten(1)
    pseudo_inputs = model.prior.pseudo_inputs.detach().flatten(1)
    for u in pseudo_inputs:
        assert (train_x == u).all(1).any()
    assert len({tuple(u.tolist()) for u in pseudo_inputs}) == 6  # six different examples


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=beta_tcvae", "model/prior=vamp"], "dimension-wise KL needs a prior that factor"),
        (["model/prior=mog", "model.free_bits=0.5"], "Gaussian against MixtureOfGaussians"),
        (["model=dip_vae", "model/prior=mog"], "does not fit model DIPVAE"),
        (["model=info_vae", "model/prior=vamp"], "does not fit model InfoVAE"),
        (["model=cvae", "model/prior=vamp", "model.likelihood=poisson"], "count model"),
        (["model=beta_tcvae", "model/posterior=iaf"], "split of the KL needs Gaussian"),
        (["model=dip_vae", "model/posterior=iaf"], "does not fit model DIPVAE"),
        (["model/prior=vamp", "model/posterior=iaf"], "mixture of the posterior's Gaussians"),
        (["model/posterior=iaf", "model.free_bits=0.5"], "IAF against StandardNormal"),
        (["model/posterior=iaf", "model.posterior.flows=0"], "flows=0: must be an integer >= 1"),
    ],
)
def test_a_prior_or_posterior_with_no_meaning_for_the_model_is_refused_with_the_config(
    overrides, message
):
    with pytest.raises(ConfigError, match=message):
        compose(*overrides)


@pytest.mark.parametrize(
    ("prior", "posterior"), [("vamp", "gaussian"), ("mog", "gaussian"), ("mog", "iaf")]
)
def test_a_run_with_other_components_trains_tests_and_draws(compose_train, prior, posterior):
    cfg = compose_train(
        f"model/prior={prior}",
        f"model/posterior={posterior}",
        "model=iwae",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "iw_samples=8",
    )
    results, objects = train(cfg)
    model = objects["model"]
    assert type(model.prior).__name__ == {"vamp": "VampPrior", "mog": "MixtureOfGaussians"}[prior]
    assert math.isfinite(results["test/nll_iw"]) and math.isfinite(results["test/iw_elbo"])
    assert not any(k.startswith("val/kl_dim") for k in results)  # no KL per dimension
    assert model.last_kl_per_dim is None
    # The KL split needs a Gaussian posterior's marginals.
    assert ({"test/mi", "test/tc", "test/dim_kl"} <= set(results)) == (posterior == "gaussian")
    images = {p.name for p in (Path(cfg.paths.output_dir) / "images").iterdir()}
    assert {"samples.png", "traversals.png"} <= images
    # The checkpoint holds the prior and builds it again with no other argument.
    loaded = type(model).load_from_checkpoint(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    for name, value in model.prior.state_dict().items():
        torch.testing.assert_close(loaded.prior.state_dict()[name], value.cpu())


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "poisson", "negative_binomial"])
def test_p_x_given_z_broadcasts_over_samples(name):
    """decode(z) of K samples per example: the same numbers as K separate one-sample calls."""
    from vaelab.models.distributions import Observation
    from vaelab.models.likelihoods import make_likelihood

    torch.manual_seed(0)
    likelihood = make_likelihood(name, (6,), 0.5)
    x = (
        torch.poisson(torch.full((4, 6), 3.0))
        if name in ("poisson", "negative_binomial")
        else torch.rand(4, 6)
    )
    if hasattr(likelihood, "fit"):
        likelihood.fit(x)
    params = torch.randn(3, 4, 6)  # K = 3 samples of B = 4 examples
    p = Observation(likelihood, params, event_dims=1)
    assert p.batch_shape == (3, 4) and p.event_shape == (6,)
    by_sample = [Observation(likelihood, params[k], event_dims=1) for k in range(3)]
    torch.testing.assert_close(p.log_prob(x), torch.stack([q.log_prob(x) for q in by_sample]))
    torch.testing.assert_close(p.nll(x), -p.log_prob(x))
    torch.testing.assert_close(p.mean, torch.stack([q.mean for q in by_sample]))


IAF = {"_target_": "vaelab.models.posteriors.IAF", "flows": 2, "hidden": 6, "context": 4}


def test_an_iaf_log_density_is_the_change_of_variables_written_out():
    """log q(z|x) = log N(z_0; mu, sigma^2) - log |det dz/dz_0|, the Jacobian taken by autograd
    through the whole flow (triangular only if the masks are right, which the det does not
    assume), for the sample drawn and for any z through the inverse."""
    torch.manual_seed(0)
    model = VAE(posterior=IAF, **COMMON)
    with torch.no_grad():  # steps far from the identity, so that a wrong term would show
        for step in model.posterior.steps:
            for p in step.parameters():
                p.add_(torch.randn_like(p))
    x, eps = torch.rand(4, 1, 4, 4).bernoulli(), torch.randn(4, 3)
    q = model.encode(x)
    z = q.from_noise(eps)
    h = model.encoder(x).double()
    mu, logvar, c = h[:, :3], h[:, 3:6], h[:, 6:]
    steps = copy.deepcopy(model.posterior.steps).double()

    def flow(z0, context):
        z = z0
        for step in steps:
            m, sigma = step.shift_and_gate(z, context)
            z = sigma * z + (1 - sigma) * m
        return z

    for t, step in enumerate(steps):  # each step autoregressive: a triangular Jacobian
        v = torch.randn(3, dtype=torch.float64)
        jacobian = torch.autograd.functional.jacobian(lambda v, s=step: s(v, c[0])[0], v)
        zero = jacobian.triu(1) if t % 2 == 0 else jacobian.tril(-1)
        assert torch.equal(zero, torch.zeros(3, 3, dtype=torch.float64))
    for b in range(4):
        z0 = mu[b] + (0.5 * logvar[b]).exp() * eps[b].double()
        jacobian = torch.autograd.functional.jacobian(lambda v, b=b: flow(v, c[b]), z0)
        by_hand = (
            D.Normal(mu[b], (0.5 * logvar[b]).exp()).log_prob(z0).sum()
            - torch.linalg.slogdet(jacobian)[1]
        )
        torch.testing.assert_close(flow(z0, c[b]).float(), z[b].detach())
        torch.testing.assert_close(q.log_prob(z)[b].double(), by_hand, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(q.log_prob(z.clone())[b].double(), by_hand, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prior", ["standard", "mog"])
def test_nll_iw_with_an_iaf_is_a_log_mean_exp_over_the_same_draws(prior):
    torch.manual_seed(0)
    model = VAE(prior=PRIORS[prior], posterior=IAF, **COMMON).eval()
    x, k = torch.rand(5, 1, 4, 4).bernoulli(), 12
    got = iw_log_likelihood(model, x, k, torch.Generator().manual_seed(3))
    with torch.no_grad():
        eps = torch.randn((k, 5, 3), generator=torch.Generator().manual_seed(3))
        h = model.encoder(x)
        mu, logvar, c = h[:, :3], h[:, 3:6], h[:, 6:]
        z, log_q = (
            mu + (0.5 * logvar).exp() * eps,
            D.Normal(mu, (0.5 * logvar).exp())
            .log_prob(mu + (0.5 * logvar).exp() * eps)
            .sum(-1)
            .double(),
        )
        for step in model.posterior.steps:
            m, sigma = step.shift_and_gate(z, c.expand(k, 5, 4))
            z = sigma * z + (1 - sigma) * m
            log_q = log_q - sigma.log().sum(-1).double()
        logits = model.decoder(z.flatten(0, 1)).view(k, 5, 1, 4, 4)
        log_px_z = D.Bernoulli(logits=logits.double()).log_prob(x.double()).sum((2, 3, 4))
        log_w = log_px_z + _log_prior_64(model, z) - log_q
        expected = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
