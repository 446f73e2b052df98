"""The pure functions against closed forms and torch.distributions."""

import math

import pytest
import torch
from torch import distributions as D

from vaelab.models.distributions import kl_per_dimension
from vaelab.models.kl_schedules import Constant, LinearWarmup
from vaelab.models.likelihoods import (
    bernoulli_log_prob,
    gaussian_log_prob,
    make_likelihood,
)


def test_kl_matches_monte_carlo_and_torch():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    p = D.Normal(torch.zeros(3), torch.ones(3))
    exact = kl_per_dimension(mu, logvar).sum(1)
    torch.testing.assert_close(exact, D.kl_divergence(q, p).sum(1))
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(monte_carlo, exact, atol=0.03, rtol=0.01)


def test_kl_is_float32_under_bfloat16_inputs():
    mu = torch.randn(2, 5).bfloat16()
    assert kl_per_dimension(mu, mu).dtype == torch.float32


def test_bernoulli_matches_torch_on_grey_values():
    torch.manual_seed(0)
    logits, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    # torch's Bernoulli accepts values in [0, 1] without validation: the continuous cross-entropy.
    expected = D.Bernoulli(logits=logits, validate_args=False).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_log_prob(x, logits), expected)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 2.5])
def test_gaussian_matches_torch(sigma):
    torch.manual_seed(0)
    mean, x = torch.randn(3, 6), torch.randn(3, 6)
    expected = D.Normal(mean, sigma).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, torch.tensor(math.log(sigma))), expected)
    torch.testing.assert_close(make_likelihood("gaussian", (6,), sigma).log_prob(x, mean), expected)


def test_gaussian_learned_has_one_trainable_sigma_per_dimension():
    likelihood = make_likelihood("gaussian_learned", (2, 3), 0.5)
    (log_sigma,) = likelihood.parameters()
    assert log_sigma.shape == (2, 3)
    with torch.no_grad():
        log_sigma.copy_(torch.linspace(-1, 1, 6).view(2, 3))
    mean, x = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    expected = D.Normal(mean, log_sigma.exp()).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(likelihood.log_prob(x, mean), expected)


@pytest.mark.parametrize(
    ("step", "expected"), [(0, 0.0), (250, 0.5), (500, 1.0), (499, 0.998), (10_000, 1.0)]
)
def test_linear_warmup(step, expected):
    assert LinearWarmup(beta=1.0, warmup_steps=500)(step) == pytest.approx(expected)


@pytest.mark.parametrize(("step", "expected"), [(0, 1.0), (50, 2.5), (100, 4.0), (101, 4.0)])
def test_linear_warmup_from_a_start_fraction(step, expected):
    assert LinearWarmup(beta=4.0, warmup_steps=100, start=0.25)(step) == pytest.approx(expected)


def test_constant_schedule():
    assert [Constant(beta=3.0)(s) for s in (0, 1, 10**6)] == [3.0, 3.0, 3.0]
