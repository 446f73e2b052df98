"""The KL weighted by beta (Higgins et al. 2017) and its schedules, free bits (Kingma et al.
2016) and capacity (Burgess et al. 2018): what the VAE, its conditional variant, DIP-VAE and
beta-TCVAE share."""

from hydra.utils import instantiate
from torch import Tensor

from vaelab.config.rules import number, or_null
from vaelab.errors import ConfigError
from vaelab.models.kl_schedules import SCHEDULE_RULES
from vaelab.models.posteriors import Gaussian

CONSTANT = {"_target_": "vaelab.models.kl_schedules.Constant"}


def free_bits(kl_dims: Tensor, floor: float) -> Tensor:
    """sum_j max(floor, mean_b KL_j) (Kingma et al. 2016): below `floor` nats a dimension's KL
    is not pushed further down, so its gradient is zero and the encoder may use it freely."""
    return kl_dims.mean(0).clamp(min=floor).sum()


class WeightedKL:
    """What the models with a weighted KL take and do, for a model class to list before
    VariationalModel (`class VAE(WeightedKL, VariationalModel)`): `beta` and its schedule
    (`kl_schedule`), `free_bits` and the capacity's `gamma`, and the loss
    recon + beta(step)·kl that a model may extend (DIP-VAE) or replace (beta-TCVAE, which weighs
    only the total correlation). A part, not a model: the models stay siblings over
    VariationalModel.
    """

    member_arguments = frozenset({"sigma", "beta", "free_bits", "gamma", "kl_schedule"})
    rules = {
        "beta": number(positive=False),
        "free_bits": number(positive=False),
        "gamma": or_null(number(positive=False)),  # null: beta weighs |KL - C|
        **{f"kl_schedule.{key}": rule for key, rule in SCHEDULE_RULES.items()},
    }

    def __init__(
        self,
        beta: float = 1.0,
        kl_schedule: dict | None = None,
        free_bits: float = 0.0,
        gamma: float | None = None,
        **shared,
    ):
        kl_schedule = kl_schedule or CONSTANT
        super().__init__(**shared)
        self.kl_schedule = instantiate(self.hparams.kl_schedule, beta=beta)
        self.free_bits, self.gamma = free_bits, gamma

    @classmethod
    def check_components(cls, prior: type, posterior: type, arguments) -> None:
        super().check_components(prior, posterior, arguments)
        floor = arguments.get("free_bits", 0.0)
        if floor and not (prior.factorised and issubclass(posterior, Gaussian)):
            raise ConfigError(
                f"model.free_bits={floor} floors the KL of each latent dimension, which only a "
                f"Gaussian posterior against a factorised prior has ({posterior.__name__} against "
                f"{prior.__name__}): set model.free_bits=0, or model/prior=standard and "
                f"model/posterior=gaussian"
            )

    def on_train_start(self) -> None:
        super().on_train_start()
        # Not at on_fit_start: the estimate sets the loader up, and before a resume has restored
        # the loop, which would then never give the loader its place in the epoch.
        if hasattr(self.kl_schedule, "spanning"):  # a schedule laid over the run's length
            self.kl_schedule = self.kl_schedule.spanning(self.trainer.estimated_stepping_batches)

    def warmup_end(self) -> float:
        return self.kl_schedule.warmup_end()

    def regulariser(self, out: dict[str, Tensor], kl: Tensor) -> Tensor:
        """What beta weighs: the KL, or with free bits its floored sum."""
        return free_bits(out["kl_dims"], self.free_bits) if self.free_bits else kl

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        terms: dict[str, Tensor | float] = dict(self.elbo_terms(out))
        step = self.global_step
        beta = self.kl_schedule(step)
        penalty = self.regulariser(out, terms["kl"])
        if hasattr(self.kl_schedule, "target"):  # capacity: gamma·|KL - C(step)|
            capacity = self.kl_schedule.target(step)
            beta = self.gamma if self.gamma is not None else beta
            terms.update(loss=terms["recon"] + beta * (penalty - capacity).abs(), capacity=capacity)
        else:
            # x * 1.0 is x: the multiplication would be an op each way for nothing.
            terms.update(loss=terms["recon"] + (penalty if beta == 1 else beta * penalty))
        terms["beta"] = beta
        return terms
