"""What every model with a posterior q(z|x) and a prior p(z) shares: the encoder that gives
q(z|x), the prior as a module (model/prior=...), the reparameterised sample, the ELBO's terms,
the importance weights, sampling, and what validation and test measure of the latent space."""

import math

import torch
from hydra.utils import get_class, instantiate
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from vaelab.config.rules import check, int_at_least
from vaelab.data.batches import num_examples
from vaelab.errors import ConfigError
from vaelab.metrics import ActiveUnits, ImportanceWeightedNLL, KLPerDimension, iw_log_likelihood
from vaelab.models.aggregate_posterior import kl_split
from vaelab.models.base import Model
from vaelab.models.distributions import DiagonalGaussian, kl_per_dimension
from vaelab.models.posteriors import Gaussian
from vaelab.models.priors import Prior, StandardNormal

STANDARD = {"_target_": "vaelab.models.priors.StandardNormal"}
GAUSSIAN = {"_target_": "vaelab.models.posteriors.Gaussian"}
# Whether torch has a closed-form KL for a (posterior, prior) pair of distribution types.
_CLOSED_FORM: dict[tuple[type, type], bool] = {}


class VariationalModel(Model):
    """q(z|x) = N(mu(x), diag sigma^2(x)) from the encoder's two heads, a prior p(z) from
    `prior` (a config: model/prior=standard|vamp|mog), z = mu + sigma·eps with eps ~ N(0, I)
    drawn outside the network math (`noise`), so that a compiled graph holds no random
    generator. `per_example` gives recon = -log p(x|z) for one sample, the KL (closed-form per
    dimension against a factorised Gaussian prior, as `kl_dims`; estimated from the sample,
    log q(z|x) - log p(z), against a prior with no closed form), mu, logvar and z;
    `elbo_terms` their batch means and the ELBO.

    Validation and test also log active_units, the KL per dimension (val/kl_dimNN, where there
    is one) and the KL split into mi, tc and dim_kl (minibatch stratified sampling over the
    split being evaluated); test adds nll_iw with `iw_samples` importance samples, and bpd with
    `report_bpd`.
    """

    default_monitor = ("val/elbo", "max")  # beta-free, so runs with different beta compare
    has_prior = True
    rules = {"iw_samples": int_at_least(1)}
    member_arguments = frozenset({"sigma"})

    def __init__(
        self,
        prior: dict | None = None,
        posterior: dict | None = None,
        iw_samples: int = 100,
        report_bpd: bool = False,
        **shared,
    ):
        # Checkpoints from before priors and posteriors were modules: N(0, I) and a Gaussian.
        prior, posterior = prior or STANDARD, posterior or GAUSSIAN
        super().__init__(**shared)
        self.iw_samples, self.report_bpd = iw_samples, report_bpd
        self.prior.bind(self)
        self._iw_generator: torch.Generator | None = None  # the IWAE bound's K samples
        self._split_size: int | None = None  # examples in the split being evaluated
        self._measured_kl_dims = False  # in this validation: a prior may have no KL per dim
        z = self.latent_dim
        self.val_active_units, self.test_active_units = ActiveUnits(z), ActiveUnits(z)
        self.val_kl_per_dim = KLPerDimension(z)
        self.test_nll_iw = ImportanceWeightedNLL()

    def build_latent(self) -> None:
        for part in ("prior", "posterior"):  # each with the rules of its own class
            config = self.hparams[part]
            check(config, getattr(get_class(config["_target_"]), "rules", {}), f"model.{part}.")
        self.posterior = instantiate(self.hparams.posterior, latent_dim=self.latent_dim)
        self.prior = instantiate(self.hparams.prior, latent_dim=self.latent_dim)
        self.check_components(type(self.prior), type(self.posterior), self.hparams)
        # What the shared paths compute without building objects: a Gaussian posterior's KL
        # split, and against N(0, I) its KL in the short closed form.
        self._gaussian_posterior = isinstance(self.posterior, Gaussian)
        self._closed_form = self._gaussian_posterior and isinstance(self.prior, StandardNormal)

    def code_dim(self) -> int:
        return self.posterior.code_dim

    @classmethod
    def check_components(cls, prior: type, posterior: type, arguments) -> None:
        """Refuse a prior or a posterior (their classes) that the objective has no meaning with,
        given the model's arguments: called on the config before the run starts, and when the
        model is built. Every pair is taken by default, except what the prior refuses (a
        likelihood, a posterior)."""
        prior.check_model(posterior, arguments.get("likelihood", "bernoulli"))

    @classmethod
    def refuse(cls, part: type, reason: str) -> ConfigError:
        group = "prior" if issubclass(part, Prior) else "posterior"
        default = "standard" if group == "prior" else "gaussian"
        return ConfigError(
            f"model/{group}: {part.__name__} does not fit model {cls.__name__}: {reason}; leave "
            f"model/{group} at {default}"
        )

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        """(B, *shape) -> q(z|x), batch shape (B,), event shape (latent_dim,)."""
        return self.posterior(self.encoder(x))

    def embed(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The posterior mean E_q[z|x], (B, latent_dim): the representation of x."""
        return self.encode(x, y).mean

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self.randn(x.shape[0], self.latent_dim),)

    def per_example(self, x: Tensor, eps: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        q = self.encode(x, y)
        z = q.from_noise(eps)
        recon = self.decode(z, y).nll(x)
        return {"recon": recon, **self.kl(q, z), "mu": q.loc, "logvar": q.logvar, "z": z}

    def kl(self, q: Distribution, z: Tensor, p: Distribution | None = None) -> dict[str, Tensor]:
        """KL(q(z|x) || p(z)), (B,), as "kl"; with a factorised Gaussian prior also per
        dimension, (B, Z), as "kl_dims". Closed-form where torch registers one for the pair,
        else the one-sample estimate log q(z|x) - log p(z) at the sample z. `p`: the prior's
        distribution where the caller has built it for this batch already (a VampPrior's
        encodes its pseudo-inputs)."""
        if self._closed_form:  # the training path of most runs: no objects, the short form
            kl_dims = kl_per_dimension(q.loc, q.logvar)
            return {"kl": kl_dims.sum(1), "kl_dims": kl_dims}
        p = self.prior.distribution() if p is None else p
        if isinstance(p, DiagonalGaussian) and isinstance(q, DiagonalGaussian):
            kl_dims = q.kl_per_dimension(p)
            return {"kl": kl_dims.sum(1), "kl_dims": kl_dims}
        pair = (type(q), type(p))
        if _CLOSED_FORM.get(pair, True):  # asked once per pair, not raised on every step
            try:
                return {"kl": kl_divergence(q, p)}
            except NotImplementedError:
                _CLOSED_FORM[pair] = False
        return {"kl": q.log_prob(z) - p.log_prob(z)}

    def log_weights(
        self,
        x: Tensor,
        q: Distribution,
        z: Tensor,
        y: Tensor | None = None,
        p: Distribution | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The log importance weights log p(x|z) + log p(z) - log q(z|x) of samples z
        (K, B, Z) of q(z|x), (K, B), and log p(x|z): what the IWAE bound and test/nll_iw are
        made of. The densities of z in float32; the decoder gets z in its own dtype. `p` as in
        `kl`."""
        log_px_z = self.decode(z.to(self.dtype), y).log_prob(x)
        log_pz = (self.prior if p is None else p).log_prob(z)
        return log_px_z + log_pz - q.log_prob(z), log_px_z

    def elbo_terms(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """recon, kl and elbo = -(recon + kl), averaged over the batch: the true values,
        whatever a model's loss does with them."""
        recon, kl = out["recon"].mean(), out["kl"].mean()
        return {"recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def eval_outputs(
        self, x: Tensor, y: Tensor | None, out: dict[str, Tensor], split: str
    ) -> dict[str, Tensor]:
        getattr(self, f"{split}_active_units").update(out["mu"])
        if split == "val" and "kl_dims" in out:
            self.val_kl_per_dim.update(out["kl_dims"])
            self._measured_kl_dims = True
        if split == "test":
            log_px = iw_log_likelihood(self, x, self.iw_samples, self._iw_generator, y=y)
            self.test_nll_iw.update(log_px)
        if self._split_size is None or not self._gaussian_posterior:  # needs q's marginals
            return {}
        split = (self.prior.log_prob, self._split_size, "mss")
        mi, tc, dim_kl = kl_split(out["z"], out["mu"], out["logvar"], *split)
        return {"mi": mi, "tc": tc, "dim_kl": dim_kl}

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._split_size = num_examples(self.trainer.val_dataloaders)
        self._measured_kl_dims = False

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._split_size = num_examples(self.trainer.test_dataloaders)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/active_units", self.val_active_units)
        if not self._measured_kl_dims:  # a prior with no KL per dimension
            return
        kl_dims = self.val_kl_per_dim.compute().reshape(-1)  # torchmetrics squeezes a (1,) result
        self.val_kl_per_dim.reset()
        self.last_kl_per_dim = kl_dims.cpu()
        self.log_dict({f"val/kl_dim{j:02d}": v for j, v in enumerate(kl_dims)}, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/active_units", self.test_active_units)
        self.log("test/nll_iw", self.test_nll_iw)
        if self.report_bpd:  # a likelihood in bits only means something for binary data
            dims = math.prod(self.input_shape)
            self.log("test/bpd", self.test_nll_iw.compute() / (dims * math.log(2)), sync_dist=True)

    def reseed_eval_noise(self) -> None:
        # The ELBO and the IWAE bound have a generator each, so that iw_samples leaves the ELBO
        # as it is.
        super().reseed_eval_noise()
        self._iw_generator = torch.Generator(self.device).manual_seed(1)
