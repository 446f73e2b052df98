"""β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in Variational
Autoencoders"): the KL split into index-code MI, total correlation and dimension-wise KL, with
beta weighting only the total correlation."""

from torch import Tensor

from vaelab.config.rules import int_at_least, one_of, or_null
from vaelab.data.batches import num_examples
from vaelab.errors import ConfigError
from vaelab.models.aggregate_posterior import ESTIMATORS, kl_split
from vaelab.models.kl_weighted import WeightedKL
from vaelab.models.posteriors import Gaussian
from vaelab.models.variational import VariationalModel


class BetaTCVAE(WeightedKL, VariationalModel):
    """loss = recon + mi + beta(step)·tc + dim_kl (the paper's alpha = gamma = 1), each term
    estimated per sample from the minibatch with `tc_estimator` (mws or mss, see
    vaelab.models.aggregate_posterior) over the N = `dataset_size` examples of the training split
    (read from the training data when the fit starts, unless given). The logged kl and elbo stay
    the closed-form values; mi, tc and dim_kl are logged beside them.
    """

    rules = {"tc_estimator": one_of(*ESTIMATORS), "dataset_size": or_null(int_at_least(2))}
    # Not its estimator nor the dataset size: per_example reads them. It refuses free bits and
    # the capacity (gamma).
    member_arguments = frozenset({"sigma", "beta", "kl_schedule"})

    def __init__(self, tc_estimator: str = "mss", dataset_size: int | None = None, **vae):
        super().__init__(**vae)
        if self.free_bits or hasattr(self.kl_schedule, "target"):
            raise ConfigError(
                "model=beta_tcvae weighs the total correlation with model.beta; free bits and "
                "the capacity schedule act on the whole KL: set model.free_bits=0 and another "
                "model/kl_schedule"
            )
        self.tc_estimator = tc_estimator

    @classmethod
    def check_components(cls, prior: type, posterior: type, arguments) -> None:
        super().check_components(prior, posterior, arguments)
        if not prior.factorised:
            raise cls.refuse(prior, "its dimension-wise KL needs a prior that factorises")
        if not issubclass(posterior, Gaussian):
            raise cls.refuse(posterior, "its split of the KL needs Gaussian posteriors")

    def check_data(self, datamodule) -> None:
        super().check_data(datamodule)
        size = self.hparams.dataset_size
        batch = len(next(iter(datamodule.train_dataloader()))[0])
        if size is not None and size < batch:
            # MSS weighs one example as the stand-in for the rest of the data by
            # (N - B + 1) / (N (B - 1)): with fewer examples than a batch, a negative weight and
            # a NaN loss from the first step.
            raise ConfigError(
                f"model.dataset_size={size} is smaller than a training batch ({batch} examples): "
                f"give the size of the training split, or null to read it from the data"
            )

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.hparams.dataset_size is None:
            size = num_examples(self.trainer.train_dataloader)
            if size is None:
                raise ConfigError(
                    "model=beta_tcvae needs the number of training examples, and this data's "
                    "loader does not say: set model.dataset_size"
                )
            # Saved with the hyper-parameters: the objective of the trained model.
            self.hparams.dataset_size = size

    def per_example(self, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
        out = super().per_example(x, eps)
        size = self.hparams.dataset_size
        if size is None and not self.training:
            # Validation before the fit has read its data (Lightning's sanity check): the
            # split is measured over the validation data instead (eval_outputs).
            return out
        if size is None:
            raise ConfigError(
                "model=beta_tcvae: the number of training examples is known once the fit has "
                "read its data; to use the model before, give dataset_size"
            )
        split = (self.prior.log_prob, size, self.tc_estimator)
        mi, tc, dim_kl = kl_split(out["z"], out["mu"], out["logvar"], *split)
        return out | {"mi": mi, "tc": tc, "dim_kl": dim_kl}

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        terms: dict[str, Tensor | float] = dict(self.elbo_terms(out))
        beta = self.kl_schedule(self.global_step)
        mi, tc, dim_kl = out["mi"].mean(), out["tc"].mean(), out["dim_kl"].mean()
        terms.update(mi=mi, tc=tc, dim_kl=dim_kl, beta=beta)
        terms["loss"] = terms["recon"] + mi + beta * tc + dim_kl
        return terms
