"""Disentanglement scores on representations whose answers are known."""

import math

import numpy as np
import pytest

from vaelab.metrics.disentanglement import (
    beta_vae_score,
    dci,
    discretize,
    factor_vae_score,
    mig,
    sap,
)

# Every point of a 3 x 40 x 10 factor grid.
FACTORS = np.stack(np.unravel_index(np.arange(3 * 40 * 10), (3, 40, 10)), 1)


def test_mig_of_the_factors_themselves_keeps_what_20_bins_keep():
    # 3 and 10 values keep all their entropy in 20 bins; 40 values keep log 20 / log 40 of it.
    expected = (1 + math.log(20) / math.log(40) + 1) / 3
    assert mig(FACTORS.astype(float), FACTORS) == pytest.approx(expected, abs=1e-9)


def test_mig_is_invariant_to_permuting_and_rescaling_code_dimensions():
    codes = FACTORS[:, [2, 0, 1]].astype(float) * np.array([3.0, -2.0, 0.5]) + 7.0
    assert mig(codes, FACTORS) == pytest.approx(mig(FACTORS.astype(float), FACTORS))


def test_mig_falls_for_rotated_entangled_and_noise_codes():
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    aligned = mig(FACTORS.astype(float), FACTORS)
    rotated = mig(FACTORS.astype(float) @ rotation, FACTORS)
    # Both codes carry both of the first two factors.
    mixed = np.stack([FACTORS[:, 0] + FACTORS[:, 1] / 40, FACTORS[:, 0] - FACTORS[:, 1] / 40,
                      FACTORS[:, 2]], 1)  # fmt: skip
    noise = mig(rng.normal(size=(len(FACTORS), 3)), FACTORS)
    assert noise < 0.02 < rotated < aligned and mig(mixed, FACTORS) < aligned
    for value in (aligned, rotated, noise):
        assert 0.0 <= value <= 1.0


def test_constant_factors_are_dropped_and_bins_follow_numpys_edges():
    constant = np.concatenate([FACTORS, np.zeros((len(FACTORS), 1), int)], 1)
    assert mig(FACTORS.astype(float), constant) == pytest.approx(
        mig(FACTORS.astype(float), FACTORS)
    )
    codes = np.array([[0.0], [0.5], [1.0]])
    assert discretize(codes, bins=2)[:, 0].tolist() == [1, 2, 2]  # the maximum: the last bin


def test_sap_is_high_for_aligned_codes_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    small = FACTORS[(FACTORS[:, 1] % 8 == 0)]  # 3 x 5 x 10 points: quick SVMs
    order = rng.permutation(len(small))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    aligned = small.astype(float) + 0.05 * rng.normal(size=small.shape)
    noise = rng.normal(size=small.shape)
    high = sap((aligned[train], small[train]), (aligned[test], small[test]))
    low = sap((noise[train], small[train]), (noise[test], small[test]))
    permuted = aligned[:, [1, 2, 0]] * 4.0
    assert sap((permuted[train], small[train]), (permuted[test], small[test])) == pytest.approx(
        high
    )
    # A linear SVM on one dimension separates few of 10 classes: good codes score ~0.3, not 1.
    assert 0.0 <= low < 0.05 < 0.2 < high <= 1.0


def test_dci_separates_aligned_from_mixed_codes():
    rng = np.random.default_rng(0)
    small = FACTORS[(FACTORS[:, 1] % 8 == 0)][:, [0, 2]]  # 3 x 10 values, 150 points
    order = rng.permutation(len(small))
    train, test = order[:100], order[100:]
    aligned = small.astype(float)
    mixed = np.stack([small[:, 0] + small[:, 1], small[:, 0] - small[:, 1]], 1).astype(float)
    good = dci((aligned[train], small[train]), (aligned[test], small[test]))
    poor = dci((mixed[train], small[train]), (mixed[test], small[test]))
    assert good["dci_disentanglement"] > 0.9 and good["dci_completeness"] > 0.9
    assert poor["dci_disentanglement"] < good["dci_disentanglement"] - 0.3
    assert good["dci_informativeness"] == pytest.approx(1.0)
    for value in (*good.values(), *poor.values()):
        assert 0.0 <= value <= 1.0
    # The factors' trees fitted in threads: the same scores.
    assert dci((mixed[train], small[train]), (mixed[test], small[test]), threads=2) == poor
    # The trees skip sklearn's own checks of their input: dci checks it once.
    broken = aligned.copy()
    broken[train[0], 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        dci((broken[train], small[train]), (aligned[test], small[test]))


SIZES = {"batch_size": 32, "num_train": 300, "num_eval": 200}


def test_beta_vae_and_factor_vae_scores_of_aligned_and_noise_codes():
    rng = np.random.default_rng(0)
    small = FACTORS[(FACTORS[:, 1] % 8 == 0)]  # 3 x 5 x 10
    aligned = small.astype(float) / small.max(0) * 2  # each dimension's variance above 0.05
    noise = rng.normal(size=small.shape)
    assert beta_vae_score(aligned, small, **SIZES) > 0.95
    assert beta_vae_score(noise, small, **SIZES) < 0.6  # chance is 1/3
    assert factor_vae_score(aligned, small, **SIZES, num_variance_estimate=500) == 1.0
    assert factor_vae_score(noise, small, **SIZES, num_variance_estimate=500) < 0.6
    # Invariant to permuting and rescaling dimensions (the FactorVAE score by its normalisation).
    permuted = aligned[:, [2, 0, 1]] * np.array([3.0, 0.5, 10.0])
    assert factor_vae_score(permuted, small, **SIZES, num_variance_estimate=500) == 1.0
    assert factor_vae_score(np.zeros_like(aligned), small, **SIZES) == 0.0  # nothing active


def test_the_factor_vae_score_prunes_by_standard_deviation_as_disentanglement_lib():
    """Codes of a small scale (an AE's, a strong-β VAE's) are kept while their standard deviation
    is at least 0.05 (disentanglement_lib's prune_dims: sqrt(var) >= threshold), even when their
    variance is below 0.05."""
    small = FACTORS[(FACTORS[:, 1] % 8 == 0)]
    aligned = small.astype(float) / small.max(0) * 2
    sizes = {**SIZES, "num_variance_estimate": 500}
    for std in (0.06, 0.1, 0.2):
        codes = aligned / aligned.std(0, ddof=1) * std
        assert factor_vae_score(codes, small, **sizes) == 1.0, std
    # One dimension below the threshold: its factor has no dimension left to name it.
    codes = aligned / aligned.std(0, ddof=1) * np.array([0.04, 0.2, 0.2])
    assert factor_vae_score(codes, small, **sizes) < 0.75
