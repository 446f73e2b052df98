"""The KL weight beta as a pure function of the global (optimizer) step.

Every schedule takes `beta`, the target weight (`model.beta`), so a schedule changes how beta is
reached, never what it is. Being a function of the step alone, a resumed run continues it exactly.
A schedule that also has `target(step)` turns the KL term into gamma·|kl − target| (Capacity).
`warmup_end()` is the step from which beta (or the capacity) stays at its target: before it, few
active latent dimensions are expected, not a sign of collapse.
"""

import math
from dataclasses import dataclass, replace

from vaelab.config.rules import in_unit_interval, int_at_least, number, or_null
from vaelab.errors import ConfigError

# What the schedules' arguments may be (model.kl_schedule.*), checked by the models that take one.
SCHEDULE_RULES = {
    "warmup_steps": int_at_least(1),
    "start": in_unit_interval(low_open=False),
    "ratio": in_unit_interval(low_open=True),
    "cycle_steps": or_null(int_at_least(1)),
    "n_cycles": int_at_least(1),
    "capacity": number(positive=False),
    "capacity_steps": int_at_least(1),
}


@dataclass(frozen=True)
class Constant:
    beta: float

    def __call__(self, step: int) -> float:
        return self.beta

    def warmup_end(self) -> float:
        return 0


@dataclass(frozen=True)
class LinearWarmup:
    """beta rises linearly from `start` (a fraction of beta) at step 0 to beta at `warmup_steps`.

    Warm-up keeps the KL from switching latent dimensions off before the decoder has learned
    to use them (Bowman et al. 2016; Sønderby et al. 2016).
    """

    beta: float
    warmup_steps: int
    start: float = 0.0

    def __call__(self, step: int) -> float:
        progress = min(step / self.warmup_steps, 1.0)
        return self.beta * (self.start + (1.0 - self.start) * progress)

    def warmup_end(self) -> float:
        return self.warmup_steps


@dataclass(frozen=True)
class Cyclical:
    """Cyclical annealing (Fu et al. 2019): the run's T optimizer steps are split into
    `n_cycles` cycles of T / n_cycles steps; in each, beta rises linearly from 0 over the first
    `ratio` of the cycle, then holds. Each restart lets the encoder escape a collapsed posterior.

    T is Lightning's estimate of the run's optimizer steps, given by the model when the fit
    starts (`spanning`). `cycle_steps` fixes the cycle length instead; then beta stays at its
    target after the n_cycles-th cycle.
    """

    beta: float
    cycle_steps: int | None = None
    n_cycles: int = 4
    ratio: float = 0.5
    total_steps: int | None = None

    def spanning(self, total_steps: float) -> "Cyclical":
        """This schedule over a run of `total_steps` optimizer steps."""
        if self.cycle_steps is None and not math.isfinite(total_steps):
            raise ConfigError(
                "model/kl_schedule=cyclical spreads its cycles over the run, and this run has no "
                "limit: set trainer.max_epochs or trainer.max_steps, or "
                "model.kl_schedule.cycle_steps"
            )
        return replace(self, total_steps=int(total_steps))

    def _cycle(self) -> float | None:
        if self.cycle_steps is not None:
            return float(self.cycle_steps)
        return self.total_steps / self.n_cycles if self.total_steps else None

    def __call__(self, step: int) -> float:
        cycle = self._cycle()
        if cycle is None or step >= self.n_cycles * cycle:  # no run to span: the target
            return self.beta
        position = (step % cycle) / cycle
        return self.beta * min(position / self.ratio, 1.0)

    def warmup_end(self) -> float:
        cycle = self._cycle()
        return math.inf if cycle is None else (self.n_cycles - 1 + self.ratio) * cycle


@dataclass(frozen=True)
class Capacity:
    """Capacity annealing (Burgess et al. 2018): the loss becomes recon + gamma·|kl − C(step)|,
    with C rising linearly from 0 to `capacity` nats over `capacity_steps` steps. The KL is held
    near a budget that grows, rather than pushed down. Its weight is the model's `gamma` when
    set, else `beta`."""

    beta: float
    capacity: float
    capacity_steps: int

    def __call__(self, step: int) -> float:
        return self.beta

    def target(self, step: int) -> float:
        """C(step), the KL budget in nats."""
        return self.capacity * min(step / self.capacity_steps, 1.0)

    def warmup_end(self) -> float:
        return self.capacity_steps
