"""Each model's objective against its paper's formula computed a second way (torch.distributions,
the aggregate posterior summed over every example of a tiny dataset)."""

import math

import numpy as np
import pytest
import torch
from torch import distributions as D
from torch.nn import functional as F

from vaelab.models import CVAE, DIPVAE, IWAE, VQVAE, WAE, BetaTCVAE, FactorVAE, InfoVAE
from vaelab.models.aggregate_posterior import kl_split
from vaelab.models.factor_vae import permute_dims
from vaelab.models.mmd import mmd

NET = {"_target_": "vaelab.models.nets.mlp", "hidden": [16]}
COMMON = {"input_shape": [1, 4, 4], "latent_dim": 3, "net": NET, "optimizer": {}}


def _posterior(model, x, eps):
    """z = mu + sigma·eps and the posterior it came from, as torch.distributions."""
    q_model = model.encode(x)
    mu, logvar = q_model.loc, q_model.logvar
    q = D.Normal(mu, (0.5 * logvar).exp())
    return q, mu + q.scale * eps


@pytest.mark.parametrize("k", [1, 5])
def test_iwae_loss_is_the_k_sample_bound(k):
    torch.manual_seed(0)
    model = IWAE(k=k, **COMMON)
    x = torch.rand(6, 1, 4, 4).bernoulli()
    eps = torch.randn(k, 6, 3)
    terms = model.losses(model.per_example(x, eps))

    q, z = _posterior(model, x, eps)  # z: (K, B, Z)
    log_px_z = torch.stack(
        [D.Bernoulli(logits=model.decoder(zk)).log_prob(x).sum((1, 2, 3)) for zk in z]
    )
    log_w = log_px_z + D.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    bound = (torch.logsumexp(log_w, 0) - math.log(k)).mean()
    torch.testing.assert_close(terms["loss"], -bound)
    torch.testing.assert_close(terms["iw_elbo"], bound)
    # The one-sample terms are those of the first sample, as a VAE's.
    torch.testing.assert_close(terms["recon"], -log_px_z[0].mean())
    kl = D.kl_divergence(q, D.Normal(0.0, 1.0)).sum(-1).mean()
    torch.testing.assert_close(terms["kl"], kl)
    if k == 1:  # L_1 is a one-sample estimate of the ELBO
        torch.testing.assert_close(bound, (log_w[0]).mean())


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_beta_tcvae_loss_is_the_decomposed_kl(estimator):
    torch.manual_seed(0)
    n, beta = 1000, 6.0
    model = BetaTCVAE(beta=beta, tc_estimator=estimator, dataset_size=n, **COMMON)
    x = torch.rand(8, 1, 4, 4).bernoulli()
    eps = torch.randn(8, 3)
    terms = model.losses(model.per_example(x, eps))

    q, z = _posterior(model, x, eps)
    recon = -D.Bernoulli(logits=model.decoder(z)).log_prob(x).sum((1, 2, 3)).mean()
    torch.testing.assert_close(terms["recon"], recon)
    # q(z_i | x_m) for every sample i and example m, per dimension.
    pairs = D.Normal(q.loc[None], q.scale[None]).log_prob(z[:, None])  # (i, m, Z)
    b = 8
    if estimator == "mws":
        log_w = torch.full((b, b), -math.log(n * b))
    else:
        w = torch.full((b, b), 1 / (b - 1))
        for i in range(b):
            w[i, (i + 1) % b] = (n - b + 1) / (n * (b - 1))
            w[i, i] = 1 / n
        log_w = w.log()
    log_qz = torch.logsumexp(log_w + pairs.sum(2), 1)
    log_prod = torch.logsumexp(log_w[..., None] + pairs, 1).sum(1)
    log_qzx, log_pz = q.log_prob(z).sum(1), D.Normal(0.0, 1.0).log_prob(z).sum(1)
    mi, tc, dim_kl = log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz
    torch.testing.assert_close(terms["tc"], tc.mean())
    torch.testing.assert_close(terms["mi"], mi.mean())
    torch.testing.assert_close(terms["dim_kl"], dim_kl.mean())
    torch.testing.assert_close(terms["loss"], terms["recon"] + (mi + beta * tc + dim_kl).mean())


def _exact_log_q(z, mu, logvar):
    """log q(z_i) and log prod_j q(z_ij) under the aggregate posterior of all N examples."""
    pairs = D.Normal(mu[None], (0.5 * logvar).exp()[None]).log_prob(z[:, None])  # (i, n, Z)
    log_n = math.log(mu.shape[0])
    log_q = torch.logsumexp(pairs.sum(2), 1) - log_n
    return log_q, (torch.logsumexp(pairs, 1) - log_n).sum(1)


def _estimated_log_q(z, mu, logvar, n, estimator):
    """log q(z_i) and log prod_j q(z_ij) as kl_split estimates them from the batch."""
    log_pz = D.Normal(0.0, 1.0).log_prob(z).sum(1)
    mi, tc, dim_kl = kl_split(z, mu, logvar, lambda _: log_pz, n, estimator)
    log_qzx = D.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1)
    log_q = log_qzx - mi
    torch.testing.assert_close(mi + tc + dim_kl, log_qzx - log_pz)  # whatever the estimator
    return log_q, log_q - tc


def _dataset(n, spread, scale, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(n, 3, generator=generator)
    logvar = torch.full((n, 3), 2 * math.log(scale))
    z = mu + scale * torch.randn(n, 3, generator=generator)
    return z, mu, logvar


@pytest.mark.parametrize(
    ("spread", "mws_offset"),
    [(0.0, "log N"), (1000.0, "log B")],  # posteriors all alike; posteriors far apart
)
def test_estimators_in_their_limits(spread, mws_offset):
    n, b = 64, 16
    z, mu, logvar = _dataset(n, spread, scale=1.0)
    exact_q, exact_prod = _exact_log_q(z, mu, logvar)
    batch = slice(0, b)
    mss_q, mss_prod = _estimated_log_q(z[batch], mu[batch], logvar[batch], n, "mss")
    torch.testing.assert_close(mss_q, exact_q[batch], atol=1e-4, rtol=0)
    mws_q, _ = _estimated_log_q(z[batch], mu[batch], logvar[batch], n, "mws")
    offset = math.log(n) if mws_offset == "log N" else math.log(b)
    torch.testing.assert_close(mws_q, exact_q[batch] - offset, atol=1e-4, rtol=0)
    if spread == 0.0:
        torch.testing.assert_close(mss_prod, exact_prod[batch], atol=1e-4, rtol=0)


def test_estimators_against_the_exact_aggregate_posterior():
    """Random minibatches of a dataset whose posteriors overlap. MSS is biased only by Jensen's
    gap, which shrinks as the batch grows (and nearly vanishes when it holds the whole dataset);
    MWS reads log q(z) low by at least log B at every sample, and by at most log N on average."""
    n = 256
    z, mu, logvar = _dataset(n, spread=1.0, scale=0.5)
    exact_q, exact_prod = _exact_log_q(z, mu, logvar)
    generator = torch.Generator().manual_seed(1)
    mss_bias, tc_bias = [], []
    for b in (16, 64, 256):
        errors = {"mss": [], "tc": [], "mws": []}
        for _ in range(20):
            index = torch.randperm(n, generator=generator)[:b]
            mss_q, mss_prod = _estimated_log_q(z[index], mu[index], logvar[index], n, "mss")
            errors["mss"].append(mss_q - exact_q[index])
            errors["tc"].append((mss_q - mss_prod) - (exact_q - exact_prod)[index])
            mws_q, _ = _estimated_log_q(z[index], mu[index], logvar[index], n, "mws")
            errors["mws"].append(mws_q - exact_q[index])
        mss, tc, mws = (torch.cat(e) for e in errors.values())
        mss_bias.append(abs(float(mss.mean())))
        tc_bias.append(abs(float(tc.mean())))
        assert float(mws.max()) <= -math.log(b) + 1e-4
        assert -math.log(n) - 1e-3 < float(mws.mean()) < -math.log(b) + 1e-4
    assert mss_bias[0] > mss_bias[1] > mss_bias[2] and mss_bias[2] < 1e-2
    assert tc_bias[0] > tc_bias[1] > tc_bias[2] and tc_bias[2] < 1e-2


@pytest.mark.parametrize("name", ["imq", "rbf"])
def test_mmd_is_the_unbiased_estimate_of_a_double_loop(name):
    generator = torch.Generator().manual_seed(0)
    z, prior = torch.randn(6, 3, generator=generator) + 0.5, torch.randn(6, 3, generator=generator)
    scales = [0.5, 2.0]

    def k(a, b):
        squared = float(((a - b) ** 2).sum())
        cs = [2 * 3 * s for s in scales]
        if name == "imq":
            return sum(c / (c + squared) for c in cs)
        return sum(math.exp(-squared / c) for c in cs)

    n = len(z)
    within = sum(
        k(z[i], z[j]) + k(prior[i], prior[j]) for i in range(n) for j in range(n) if i != j
    )
    between = sum(k(z[i], prior[j]) for i in range(n) for j in range(n))
    expected = within / (n * (n - 1)) - 2 * between / n**2
    assert float(mmd(z, prior, name, scales)) == pytest.approx(expected, rel=1e-5)
    # Zero in expectation for one distribution: near zero for two large samples of it.
    a, b = torch.randn(2, 2000, 3, generator=generator)
    assert abs(float(mmd(a, b, name, scales))) < 2e-3 < float(mmd(a + 0.5, b, name, scales))


@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_dip_vae_penalty_is_on_the_covariance_numpy_computes(dip_type):
    torch.manual_seed(0)
    model = DIPVAE(dip_type=dip_type, lambda_od=10.0, **COMMON)
    x, eps = torch.rand(16, 1, 4, 4).bernoulli(), torch.randn(16, 3)
    out = model.per_example(x, eps)
    terms = model.losses(out)
    mu, logvar = (out[k].detach().double().numpy() for k in ("mu", "logvar"))
    cov = np.cov(mu.T, bias=True)  # over examples, divided by B
    if dip_type == "ii":
        cov = cov + np.diag(np.exp(logvar).mean(0))
    off = ((cov - np.diag(np.diag(cov))) ** 2).sum()
    on = ((np.diag(cov) - 1) ** 2).sum()
    lambda_d = 100.0 if dip_type == "i" else 10.0  # disentanglement_lib's convention
    assert float(terms["dip_od"].detach()) == pytest.approx(off, rel=1e-4)
    assert float(terms["dip_d"].detach()) == pytest.approx(on, rel=1e-4)
    expected = (terms["recon"] + terms["kl"]).detach() + 10.0 * off + lambda_d * on
    assert float(terms["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)


def test_info_vae_and_wae_losses_weigh_kl_and_mmd_as_their_papers():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 4, 4).bernoulli()
    eps, prior = torch.randn(8, 3), torch.randn(8, 3)
    info = InfoVAE(alpha=0.5, lambda_mmd=100.0, **COMMON)
    out = info.per_example(x, eps, prior)
    terms = info.losses(out)
    q, z = _posterior(info, x, eps)
    divergence = mmd(z, prior)
    torch.testing.assert_close(terms["mmd"], divergence)
    kl = D.kl_divergence(q, D.Normal(0.0, 1.0)).sum(-1).mean()
    expected = terms["recon"] + 0.5 * kl + (0.5 + 100.0 - 1.0) * divergence
    torch.testing.assert_close(terms["loss"], expected)

    wae = WAE(lambda_mmd=10.0, **COMMON)
    terms = wae.losses(wae.per_example(x, prior))
    h = wae.encode(x)
    recon = -D.Bernoulli(logits=wae.decoder(h)).log_prob(x).sum((1, 2, 3)).mean()
    torch.testing.assert_close(terms["loss"], recon + 10.0 * mmd(h, prior))
    assert wae.has_prior and wae.sample(3).shape == (3, 1, 4, 4)


def test_factor_vae_loss_and_its_discriminator():
    torch.manual_seed(0)
    model = FactorVAE(discriminator_optimizer={}, gamma=6.4, **COMMON)
    layers = [m for m in model.discriminator if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [
        (3, 1000),
        *[(1000, 1000)] * 4,
        (1000, 2),
    ]  # the paper's six layers of 1000 units
    x, eps = torch.rand(8, 1, 4, 4).bernoulli(), torch.randn(8, 3)
    terms = model.losses(model.per_example(x, eps))
    _, z = _posterior(model, x, eps)
    logits = model.discriminator(z)
    log_ratio = torch.log_softmax(logits, 1)[:, 0] - torch.log_softmax(logits, 1)[:, 1]
    torch.testing.assert_close(terms["tc_discriminator"], log_ratio.mean())
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"] + 6.4 * log_ratio.mean())


def test_permuted_dimensions_keep_each_marginal_and_break_the_joint():
    z = torch.arange(200.0).view(100, 2) * torch.tensor([1.0, -1.0])  # z_1 = -z_0 - 1
    permuted = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(2):
        assert torch.equal(permuted[:, j].sort().values, z[:, j].sort().values)
    assert (permuted[:, 1] != -permuted[:, 0] - 1).float().mean() > 0.9


def test_vq_vae_quantizes_to_the_nearest_code_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    model = VQVAE(vector_dim=1, codebook_size=16, commitment=0.25, **COMMON)
    x = torch.rand(5, 1, 4, 4).bernoulli()
    z_e = model.encode(x)
    z_q, codes = model.quantize(z_e)
    # Nearest by brute force: each of the 3 numbers is its own vector of one.
    nearest = (z_e.detach()[..., None] - model.codebook[:, 0]).abs().argmin(-1)
    assert torch.equal(codes, nearest) and torch.equal(z_q, model.codebook[nearest, 0])

    out = model.per_example(x)
    terms = model.losses(out)
    torch.testing.assert_close(terms["commitment"], (z_e - z_q).pow(2).sum(1).mean())
    encoder_grads = torch.autograd.grad(out["recon"].sum(), list(model.encoder.parameters()))
    # The same gradient by hand: dL/dz_q of a decoder fed z_q, carried into the encoder at z_e.
    fed = z_q.detach().requires_grad_()
    recon = -D.Bernoulli(logits=model.decoder(fed)).log_prob(x).sum((1, 2, 3))
    (upstream,) = torch.autograd.grad(recon.sum(), fed)
    by_hand = torch.autograd.grad(model.encode(x), list(model.encoder.parameters()), upstream)
    for a, b in zip(encoder_grads, by_hand, strict=True):
        torch.testing.assert_close(a, b)


def test_vq_vae_codebook_follows_moving_averages_and_restarts_dead_codes():
    torch.manual_seed(0)
    model = VQVAE(vector_dim=2, codebook_size=4, decay=0.5, dead_threshold=0.3, **COMMON | {
        "latent_dim": 2})  # fmt: skip
    model.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [5.0, -5.0]]))
    model.sums.copy_(model.codebook)
    model.counts.copy_(torch.tensor([1.0, 1.0, 1.0, 0.4]))
    z_e = torch.tensor([[1.0, 1.0], [9.0, 9.0], [11.0, 11.0]])
    _, codes = model.quantize(z_e)
    assert codes.flatten().tolist() == [0, 1, 1]
    model.update_state({"z_e": z_e, "codes": codes})
    counts = torch.tensor([0.5 + 0.5, 0.5 + 1.0, 0.5, 0.2])  # code 3 now below 0.3: dead
    sums = torch.tensor([[0.5, 0.5], [5.0 + 10.0, 5.0 + 10.0], [-5.0, 5.0]])
    total = counts.sum()
    smoothed = (counts + 1e-5) / (total + 4e-5) * total
    torch.testing.assert_close(model.codebook[:3], sums / smoothed[:3, None])
    # The dead code restarted at one of the batch's encoder outputs, with a count of one.
    assert any(torch.equal(model.codebook[3], v) for v in z_e) and model.counts[3] == 1.0


def test_cvae_conditions_encoder_and_decoder_on_the_label():
    torch.manual_seed(0)
    model = CVAE(num_classes=3, **COMMON)
    x, eps = torch.rand(6, 1, 4, 4).bernoulli(), torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    terms = model.losses(model.per_example(x, eps, y=y))
    # q(z|x, y): the encoder's output shifted by the label's column; p(x|z, y): [z, one-hot y].
    h = model.encoder(x) + model.encoder_label.weight.T[y]
    mu, logvar = h.chunk(2, 1)
    q = D.Normal(mu, (0.5 * logvar).exp())
    z = mu + q.scale * eps
    logits = model.decoder(torch.cat([z, F.one_hot(y, 3).float()], 1))
    recon = -D.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)).mean()
    kl = D.kl_divergence(q, D.Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["loss"], recon + kl)
    # Without labels (y = -1, or none) the label enters as no class at all.
    unlabelled = model.embed(x, torch.full((6,), -1))
    torch.testing.assert_close(unlabelled, model.encoder(x).chunk(2, 1)[0])
    torch.testing.assert_close(model.embed(x), unlabelled)
    generator = torch.Generator().manual_seed(0)
    threes = model.sample(4, generator, label=2)
    generator = torch.Generator().manual_seed(0)
    assert not torch.allclose(threes, model.sample(4, generator, label=0))
