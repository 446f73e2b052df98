"""Embeddings of a dataset split (`model.embed`: mu for a VAE, h for an AE), and how useful they
are."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@torch.no_grad()
def embed(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, Z) float32, labels (N,) int64) over an iterable of (x, y) batches."""
    model.eval()
    codes, labels = [], []
    for x, y in batches:
        # Without the label: it is what the probes predict, and a conditional model's code
        # given it would carry it by construction.
        codes.append(model.embed(x.to(model.device, model.dtype)).float().cpu())
        labels.append(y.cpu())
    return torch.cat(codes).numpy(), torch.cat(labels).numpy()


def probe_accuracies(train: tuple, test: tuple, k: int = 5) -> dict[str, float]:
    """Test accuracy of a linear classifier (logistic regression on standardised embeddings)
    and of k-nearest neighbours, both fitted on the training embeddings; {} without labels."""
    (z_train, y_train), (z_test, y_test) = train, test
    if (y_train < 0).any() or (y_test < 0).any() or len(np.unique(y_train)) < 2:
        return {}
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    knn = KNeighborsClassifier(n_neighbors=k)
    return {
        "linear_probe_acc": float(linear.fit(z_train, y_train).score(z_test, y_test)),
        "knn_acc": float(knn.fit(z_train, y_train).score(z_test, y_test)),
    }


def disentanglement_scores(model, datamodule, settings, embedded=None) -> dict[str, float]:
    """The disentanglement scores of the model's embeddings against the data's factors
    (vaelab.metrics.disentanglement): MIG, the β-VAE and FactorVAE scores on the test split,
    SAP and DCI fitted on training examples and scored on test ones; {} for data without
    factors. `settings` are the sample sizes of conf/metrics; `embedded`, the (train, test)
    results of `embed` where the caller has them already."""
    from vaelab.metrics import disentanglement as d

    if not datamodule.factor_names or not settings or not settings.enabled:
        return {}
    rng = np.random.default_rng(settings.seed)
    if embedded is None:
        embedded = (
            embed(model, datamodule.loader("train")),
            embed(model, datamodule.test_dataloader()),
        )
    (fit_codes, _), (codes, _) = embedded
    factors = datamodule.factors["test"].numpy()
    fit_factors = datamodule.factors["train"].numpy()
    fit = rng.permutation(len(fit_codes))[: settings.fit_examples]
    score = rng.permutation(len(codes))[: settings.score_examples]
    train, test = (fit_codes[fit], fit_factors[fit]), (codes[score], factors[score])
    sizes = dict(batch_size=settings.batch_size, num_train=settings.num_train,
                 num_eval=settings.num_eval, seed=settings.seed)  # fmt: skip
    return {
        "mig": d.mig(codes, factors, settings.bins),
        "sap": d.sap(train, test),
        **d.dci(train, test, settings.seed, threads=torch.get_num_threads()),
        "beta_vae_score": d.beta_vae_score(codes, factors, **sizes),
        "factor_vae_score": d.factor_vae_score(
            codes, factors, num_variance_estimate=settings.num_variance_estimate, **sizes
        ),
    }
