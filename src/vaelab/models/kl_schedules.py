"""The KL weight beta as a pure function of the global (optimizer) step.

Every schedule takes `beta`, the target weight (`model.beta`), so a schedule changes how beta is
reached, never what it is. Being a function of the step alone, a resumed run continues it exactly.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    beta: float

    def __call__(self, step: int) -> float:
        return self.beta


@dataclass(frozen=True)
class LinearWarmup:
    """beta rises linearly from `start` (a fraction of beta) at step 0 to beta at `warmup_steps`.

    Warm-up keeps the KL from switching latent dimensions off before the decoder has learned
    to use them (Bowman et al. 2016; Sønderby et al. 2016).
    """

    beta: float
    warmup_steps: int
    start: float = 0.0

    def __post_init__(self):
        if self.warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {self.warmup_steps}")
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start must be in [0, 1], got {self.start}")

    def __call__(self, step: int) -> float:
        progress = min(step / self.warmup_steps, 1.0)
        return self.beta * (self.start + (1.0 - self.start) * progress)
