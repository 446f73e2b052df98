"""Disentanglement scores of a representation against known factors, each as its paper defines
it, with disentanglement_lib's protocol where the paper leaves a choice. `codes` (N, Z) are the
model's `embed(x)` of N examples, `factors` (N, K) their integer factor indices; factors that are
constant over the examples are dropped (they have no entropy to explain)."""

import numpy as np
from sklearn.metrics import mutual_info_score


def varying(factors: np.ndarray) -> np.ndarray:
    """The factor columns that take more than one value."""
    keep = [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    return factors[:, keep]


def discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each code dimension into `bins` equal-width bins between its minimum and maximum: the
    left edges of numpy's histogram, then np.digitize (so the maximum gets a bin of its own
    index, as disentanglement_lib does). (N, Z) int."""
    columns = []
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins)[1][:-1]
        columns.append(np.digitize(codes[:, j], edges))
    return np.stack(columns, 1)


def mutual_information(discrete: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_j; factor_k) in nats from counts, (Z, K)."""
    return np.array(
        [[mutual_info_score(factors[:, k], discrete[:, j]) for k in range(factors.shape[1])]
         for j in range(discrete.shape[1])]
    )  # fmt: skip


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    """H(factor_k) in nats from counts, (K,)."""
    return np.array([mutual_info_score(f, f) for f in factors.T])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Mutual information gap (Chen et al. 2018): per factor, the gap between the two code
    dimensions that know most about it, over its entropy; averaged over the factors. As
    disentanglement_lib's `compute_mig`: the codes in 20 equal-width bins (`discretize`), mutual
    information and entropy from counts in nats; where it draws 10,000 examples, vaelab scores
    the whole test split. A constant factor (entropy 0) is dropped where disentanglement_lib
    would divide by 0."""
    factors = varying(factors)
    info = mutual_information(discretize(codes, bins), factors)
    entropy = factor_entropy(factors)
    top = np.sort(info, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return float(np.mean((top[0] - second) / entropy))


def sap(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float:
    """Separated attribute predictability (Kumar et al. 2018), for discrete factors as
    disentanglement_lib computes it: per code dimension and factor, the test accuracy of a
    linear SVM (sklearn's LinearSVC, C = 0.01, balanced classes) predicting the factor from that
    dimension alone, fitted on `train`; per factor, the gap between the two best dimensions;
    their mean (its 10,000 train and 5,000 test examples are metrics.fit_examples and
    metrics.score_examples). `train` and `test` are (codes (N, Z), factors (N, K))."""
    from sklearn.svm import LinearSVC

    (codes, factors), (test_codes, test_factors) = train, test
    keep = [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    scores = np.zeros((codes.shape[1], len(keep)))
    for j in range(codes.shape[1]):
        for column, k in enumerate(keep):
            classifier = LinearSVC(C=0.01, class_weight="balanced")
            classifier.fit(codes[:, j : j + 1], factors[:, k])
            predicted = classifier.predict(test_codes[:, j : j + 1])
            scores[j, column] = np.mean(predicted == test_factors[:, k])
    top = np.sort(scores, axis=0)
    second = top[-2] if len(top) > 1 else np.zeros_like(top[-1])
    return float(np.mean(top[-1] - second))


def dci(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
    threads: int = 1,
) -> dict[str, float]:
    """DCI (Eastwood & Williams 2018) with gradient-boosted trees, as disentanglement_lib: one
    classifier per factor on all code dimensions, fitted on `train`; R (Z, K) their feature
    importances. disentanglement: per code dimension 1 - H_K(its row of R), weighted by the
    dimension's share of R; completeness: per factor 1 - H_Z(its column), weighted by the
    factor's share; informativeness: the classifiers' mean test accuracy (higher is better;
    disentanglement_lib's informativeness_test). The trees are sklearn's defaults (100 of depth
    3), as there, but seeded (`seed`) where disentanglement_lib leaves them unseeded, so a score
    repeats; the 1e-11 added before the entropies and the all-zero R counted as uniform weights
    are disentanglement_lib's. The factors' classifiers are fitted `threads` at a time (sklearn
    builds a tree without the GIL): the same scores."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy.stats import entropy

    (codes, factors), (test_codes, test_factors) = train, test
    keep = [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    if not (np.isfinite(codes).all() and np.isfinite(test_codes).all()):
        raise ValueError("DCI: the codes hold NaN or infinity (a diverged model?)")

    def fitted(k: int) -> tuple[np.ndarray, float]:
        return _boosted_trees(codes, factors[:, k], test_codes, test_factors[:, k], seed)

    with ThreadPoolExecutor(max(1, min(threads, len(keep)))) as pool:
        done = list(pool.map(fitted, keep))
    importance = np.zeros((codes.shape[1], len(keep)))
    for column, (importances, _) in enumerate(done):
        importance[:, column] = importances
    accuracy = [score for _, score in done]
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    per_code = 1.0 - entropy(importance.T + 1e-11, base=importance.shape[1])
    per_factor = 1.0 - entropy(importance + 1e-11, base=importance.shape[0])
    return {
        "dci_disentanglement": float(np.sum(per_code * weights.sum(1) / weights.sum())),
        "dci_completeness": float(np.sum(per_factor * weights.sum(0) / weights.sum())),
        "dci_informativeness": float(np.mean(accuracy)),
    }


def _boosted_trees(codes, target, test_codes, test_target, seed: int) -> tuple[np.ndarray, float]:
    """One factor's DCI classifier: its feature importances (absolute) and its test accuracy."""
    import sklearn
    from sklearn.ensemble import GradientBoostingClassifier

    # Each of the hundreds of small trees checks its arguments and its input again; the codes
    # are checked finite by `dci`, the arguments are sklearn's defaults: the same trees, 10-20%
    # sooner. (sklearn's settings are per thread: set here, in the thread that fits.)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        model = GradientBoostingClassifier(random_state=seed).fit(codes, target)
        accuracy = float(np.mean(model.predict(test_codes) == test_target))
    return np.abs(model.feature_importances_), accuracy


def _by_value(factors: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """The example indices of each (factor, value), found once for all the draws."""
    return {
        (k, value): np.flatnonzero(factors[:, k] == value)
        for k in range(factors.shape[1])
        for value in np.unique(factors[:, k])
    }


def beta_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    seed: int = 0,
) -> float:
    """The β-VAE score (Higgins et al. 2017): points of mean |z1 - z2| over `batch_size` pairs
    that share one factor's value (the factor chosen at random); a logistic regression fitted on
    `num_train` of them names the shared factor, its accuracy on `num_eval` more
    (disentanglement_lib's `compute_beta_vae_sklearn`: 64, 10,000 and 5,000). The pairs are
    drawn from the examples given (a split of the data), not generated anew as in
    disentanglement_lib, which covers its uniform factor sampling when the split is the grid.
    The regression is sklearn's default (lbfgs, multinomial) with 1000 iterations instead of
    100, which stop before it converges on unscaled codes."""
    from sklearn.linear_model import LogisticRegression

    factors = varying(factors)
    rng = np.random.default_rng(seed)
    groups = _by_value(factors)

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        shared = rng.integers(factors.shape[1], size=n)
        features = np.empty((n, codes.shape[1]))
        for i, k in enumerate(shared):
            first = rng.integers(len(codes), size=batch_size)
            second = np.array([rng.choice(groups[k, factors[j, k]], 1)[0] for j in first])
            features[i] = np.abs(codes[first] - codes[second]).mean(0)
        return features, shared

    model = LogisticRegression(max_iter=1000).fit(*points(num_train))
    return float(model.score(*points(num_eval)))


def factor_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    seed: int = 0,
    threshold: float = 0.05,
) -> float:
    """The FactorVAE score (Kim & Mnih 2018): each vote fixes one factor's value over
    `batch_size` examples and names the code dimension whose variance (ddof=1), relative to its
    variance over `num_variance_estimate` examples of the data, is smallest; the majority-vote
    classifier from dimensions to factors, fitted on `num_train` votes, scored on `num_eval`.
    Dimensions whose *standard deviation* over the data is below `threshold` are left out:
    disentanglement_lib's `prune_dims` (sqrt(variance) >= threshold, 0.05 in its
    unsupervised_study_v1); with none left the score is 0, as there. The sizes are
    disentanglement_lib's `compute_factor_vae` defaults; a vote names the dimension by its index
    among all of them (disentanglement_lib counts it among the kept ones, which relabels the
    dimensions and leaves the score as it is). Examples are drawn with replacement."""
    factors = varying(factors)
    rng = np.random.default_rng(seed)
    groups = _by_value(factors)
    sample = rng.integers(len(codes), size=num_variance_estimate)
    scale = np.var(codes[sample], axis=0, ddof=1)
    active = np.sqrt(scale) >= threshold
    if not active.any():
        return 0.0

    def votes(n: int) -> np.ndarray:
        counts = np.zeros((codes.shape[1], factors.shape[1]), dtype=np.int64)
        for k in rng.integers(factors.shape[1], size=n):
            value = factors[rng.integers(len(codes)), k]
            batch = codes[rng.choice(groups[k, value], batch_size)]
            relative = np.var(batch, axis=0, ddof=1)[active] / scale[active]
            counts[np.flatnonzero(active)[np.argmin(relative)], k] += 1
        return counts

    train, evaluation = votes(num_train), votes(num_eval)
    classifier = np.argmax(train, axis=1)  # each dimension's factor
    return float(evaluation[np.arange(len(classifier)), classifier].sum() / evaluation.sum())
