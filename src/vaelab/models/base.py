"""The training plumbing every model shares. Models are siblings over it, each a file with its math.

A model defines:

- `encode(x)`: q(z|x) as a Distribution (vaelab.models.variational), or a deterministic model's
  code; `embed(x)`, (B, D): the representation that probes, exports and pictures use.
  `decode(z)` is shared: p(x|z), a Distribution over examples, for z of any leading shape; a
  model whose decoder takes more than z (a label) defines `decoder_params(z, y)`;
- `per_example(x, *noise)`: its network math for one batch, per example, tensors in and tensors
  out (what `model.compile=true` compiles); `noise(x)` draws its random inputs (none by default),
  outside the compiled graph;
- `losses(out)`: from what `per_example` returned, "loss" and the terms it is made of, averaged
  over the batch. Terms that are plain floats (a scheduled weight) describe the training step and
  are logged in training only;
- where it has a prior, `has_prior = True` and a `prior` module (vaelab.models.priors) that
  `sample(n, generator)` draws from;
- optionally `eval_outputs(x, y, out, split)`: what only validation and test measure. It updates
  the model's epoch-level metrics and returns per-example tensors that join `out` before
  `losses` (replacing training-time estimates of the same name) and are logged as they are;
- optionally `update_state(out)`, what it moves after a training batch outside the gradient;
  `warmup_end()`, where a schedule ramps its weights up, and `extra_optimizers()` for
  parts trained by optimizers of their own (then it optimizes by hand: `optimize(batch)` takes
  one batch's steps, with `step_extra` for those parts).

Its `__init__` takes its own arguments and passes the shared ones on (`**shared`); all of them
are saved as the checkpoint's hyper-parameters, as plain containers, and checked against the
class's `rules` (what its own arguments may be, beside the shared ones of
`vaelab.config.schema.MODEL_RULES`), with the config and again when the model is built.
"""

import inspect
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from vaelab import lightning_boundary, steps_per_call
from vaelab.config.containers import to_plain
from vaelab.config.rules import Rule, check
from vaelab.config.schema import MODEL_RULES
from vaelab.data.batches import Steps
from vaelab.errors import ConfigError, TrainingDiverged
from vaelab.models.distributions import Observation
from vaelab.models.likelihoods import Log1p, make_likelihood
from vaelab.models.running_means import RunningMeans
from vaelab.runs.resume import read_checkpoint
from vaelab.runs.rng import rng_states, set_rng_states
from vaelab.runs.trained import saved_model_class


class Model(L.LightningModule):
    """The plumbing: hyper-parameters, networks and likelihood from configs, optimizers and LR
    schedulers from configs, device-side training means and their logging, the divergence guard,
    RNG states and running means in checkpoints, compile switching, the evaluation noise.

    The networks, optimizer and LR scheduler arrive as configs (`_target_` dicts), not as built
    objects: `load_from_checkpoint(path)` needs no other argument.
    """

    default_monitor = ("val/recon", "min")  # the best checkpoint's metric, when none is given
    has_prior = False
    conditional = False  # whether the label y enters encode, decode and the loss
    # What the model's own arguments may be, by name (dotted below a dict argument): merged with
    # those of the classes it extends (argument_rules), and checked with the config and when
    # the model is built.
    rules: dict[str, Rule] = MODEL_RULES
    # A term of the loss that is a statistic over the examples of a batch (an MMD, a covariance):
    # named here, it refuses batches of one, over which it is 0.
    batch_statistic = ""
    # The arguments whose values may differ between members of a sweep trained as one stack
    # (vaelab.batched): what only `losses` reads (each member's own), or what lives in a buffer,
    # which the stack holds per member (a fixed sigma). None: the model does not train stacked.
    # Declared by each class itself, not inherited (vaelab.batched.groups.member_arguments): a
    # subclass may read more in its own per_example.
    member_arguments: frozenset[str] | None = None

    def __init__(
        self,
        input_shape: list[int],
        latent_dim: int,
        net: dict,
        optimizer: dict,
        likelihood: str = "bernoulli",
        sigma: float = 0.1,
        scheduler: dict | None = None,
        monitor: str | None = None,
        monitor_mode: str | None = None,
        compile: bool = False,
        compile_mode: str = "default",
    ):
        super().__init__()
        # Every __init__ argument up the chain: the model's own and these.
        arguments = to_plain(lightning_boundary.init_arguments(inspect.currentframe(), Model))
        check(arguments, self.argument_rules(), "model.")
        self.save_hyperparameters(arguments, logger=False)  # the loggers get the run's config
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.monitor = monitor or self.default_monitor[0]
        self.monitor_mode = monitor_mode or self.default_monitor[1]
        self.build_latent()
        self.encoder, self.decoder = instantiate(
            self.hparams.net,
            input_shape=self.input_shape,
            code_dim=self.code_dim(),
            latent_dim=self.decoder_inputs(),
        )
        self.likelihood = make_likelihood(likelihood, self.input_shape, sigma)
        if getattr(self.likelihood, "encodes_log1p", False):  # counts
            self.encoder = nn.Sequential(Log1p(), self.encoder)
        self.core = self.per_example  # torch.compile'd while fitting, with model.compile=true
        self.train_means = RunningMeans()
        self.eval_means = RunningMeans()  # a fresh one for each validation and test pass
        self.iw_samples: int | None = None  # importance samples of test/nll_iw, where it has one
        self.last_kl_per_dim: Tensor | None = None  # of the last validation, where it has one
        self._eval_generator: torch.Generator | None = None
        # A member of a sweep trained in lockstep (vaelab.batched.lockstep): its per_example
        # calls and their backward are computed with the other members', stacked.
        self.seat: Any = None
        self._last_finite: dict[str, float] = {}  # training means at the last check
        self._logged_step = -1  # the step of the last window written to the loggers
        # Several optimizer steps per Lightning step (trainer.steps_per_call), when it takes them.
        self.several_steps: steps_per_call.StepsPerCall | None = None

    @classmethod
    def argument_rules(cls) -> dict[str, Rule]:
        merged: dict[str, Rule] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("rules", {}))
        return merged

    # The model's math: what a subclass defines.

    def encode(self, x: Tensor, y: Tensor | None = None) -> Any:
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Observation:
        """z (..., latent_dim) -> p(x|z), batch shape z.shape[:-1], event shape one example.
        The labels y (B,) matter to a conditional model only, as in encode and embed; with
        several samples per example, z (K, B, latent_dim), they repeat over the samples."""
        lead = z.shape[:-1]
        if len(lead) == 1:
            return Observation(self.likelihood, self.decoder_params(z, y), len(self.input_shape))
        y = None if y is None else y.expand(lead).reshape(-1)
        params = self.decoder_params(z.reshape(-1, z.shape[-1]), y)
        return Observation(
            self.likelihood, params.view(*lead, *params.shape[1:]), len(self.input_shape)
        )

    def decoder_params(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """(N, latent_dim) -> the parameters of p(x|z), (N, *shape): logits or Gaussian means."""
        return self.decoder(z)

    def build_latent(self) -> None:
        """Build what the latent space is made of before the networks (a posterior and a prior
        decide how many numbers the encoder gives)."""

    def code_dim(self) -> int:
        """The size of the encoder's output: latent_dim for a model whose code is z itself."""
        return self.hparams.latent_dim

    def decoder_inputs(self) -> int:
        """The size of the decoder's input: latent_dim, plus what a conditional model adds."""
        return self.hparams.latent_dim

    def embed(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return ()

    def per_example(self, x: Tensor, *noise: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        raise NotImplementedError

    def eval_outputs(
        self, x: Tensor, y: Tensor | None, out: dict[str, Tensor], split: str
    ) -> dict[str, Tensor]:
        return {}

    def check_data(self, datamodule) -> None:
        """Refuse data this model cannot train on (a conditional model's, without labels), and
        take from it what the likelihood and the prior fit before training (a count model's
        typical library size, a VampPrior's first pseudo-inputs): called once the data is set
        up, before the run writes anything."""
        batch_size = getattr(datamodule, "batch_size", None)
        if self.batch_statistic and isinstance(batch_size, int) and batch_size < 2:
            raise ConfigError(
                f"data.batch_size={batch_size}: {type(self).__name__}'s {self.batch_statistic} "
                f"is computed over the examples of a batch and is 0 over one; give "
                f"data.batch_size >= 2"
            )
        splits = getattr(datamodule, "splits", None)
        for part in (self.likelihood, getattr(self, "prior", None)):
            if splits and hasattr(part, "fit"):
                part.fit(splits["train"][0])

    def update_state(self, out: dict[str, Tensor]) -> None:
        """State a model moves after each training batch outside the gradient (a codebook's
        moving averages)."""

    def warmup_end(self) -> float:
        """The step from which the objective has its final weights (a KL warm-up's end): before
        it, few active latent dimensions are no sign of collapse."""
        return 0

    # What every model offers on top of its math.

    def forward(self, x: Tensor, y: Tensor | None = None) -> Observation:
        """p(x|z) at the embedding z of x: a deterministic reconstruction."""
        return self.decode(self.embed(x, y), y)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The mean of p(x|x'), deterministic: what a picture of the reconstruction shows."""
        return self(x, y).mean

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the mean of p(x|z), z from the prior (a model with one). A generator of
        its own keeps picture-making from moving the training random stream."""
        return self.decode(self.prior.sample(n, generator).to(self.device, self.dtype)).mean

    def terms(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor | float]:
        """The loss and what it is made of for a batch x (nats per example)."""
        return self.losses(self.computed(x, self.noise(x), self._condition(y)))

    def computed(self, x: Tensor, noise: tuple[Tensor, ...], condition: dict) -> dict[str, Tensor]:
        """`per_example` (compiled, with model.compile=true), or stacked with the other members'
        calls when the model is a member of a lockstep."""
        if self.seat is not None:
            return self.seat.per_example(self, x, noise, condition)
        return self.core(x, *noise, **condition)

    def _condition(self, y: Tensor | None) -> dict[str, Tensor]:
        """The labels as `per_example` takes them: a conditional model's keyword, else none."""
        return {"y": y} if self.conditional else {}

    def randn(self, *shape: int) -> Tensor:
        """Standard normal noise: from the training random stream while training, else from the
        evaluation generator, reseeded at the start of each validation and test pass."""
        generator = None if self.training else self._eval_generator
        return torch.randn(shape, generator=generator, device=self.device)

    # Training, validation and test steps.

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch
        out = self.computed(x, self.noise(x), self._condition(y))
        if split == "train":
            terms = self.losses(out)
            self.update_state(out)
            self.log_training(terms, x.shape[0])
            return terms["loss"]
        measured = self.eval_outputs(x, y if self.conditional else None, out, split)
        terms = self.losses(out | measured)
        terms = {k: v for k, v in terms.items() if isinstance(v, Tensor)}
        terms |= {k: v.mean() for k, v in measured.items()}
        # Summed on the device and logged once, at the end of the pass (`log_eval_means`): a
        # `self.log_dict` per batch cost more host time than a small model's whole batch.
        self.eval_means.add(terms, x.shape[0])
        return terms["loss"]

    @steps_per_call.known
    def training_step(self, batch, batch_idx):
        if isinstance(batch[-1], Steps):  # several batches at once (trainer.steps_per_call)
            self.several_steps.take(self, *batch)
            return None
        if self.automatic_optimization:
            return self._step(batch, "train")
        self.optimize(batch)
        steps_per_call.step_schedulers(self)
        return None

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        # A member of a lockstep: with the other members' losses, through their stacked pass.
        if self.seat is None or not self.seat.backward(self, loss):
            super().backward(loss, *args, **kwargs)

    def optimize(self, batch: tuple[Tensor, Tensor]) -> None:
        """One batch's optimizer step, by hand: what a model that optimizes by hand defines, and
        what the others do when they take several steps per call. Lightning's own steps, written
        out: the loss, zero_grad, backward through the precision plugin, clipping in
        `on_before_optimizer_step` (after a 16-mixed loss scale is taken off), the step."""
        optimizer = self.optimizers()
        loss = self._step(batch, "train")
        if self.several_steps is not None and self.several_steps.direct:
            steps_per_call.direct_step(self, optimizer, loss)
            return
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def on_train_start(self) -> None:
        if self.several_steps is not None:
            self.several_steps.start(self)

    @steps_per_call.known
    def on_before_optimizer_step(self, optimizer) -> None:
        clip = self.several_steps.clip if self.several_steps is not None else None
        if clip is not None:  # taken over from Lightning, which clips only what it steps
            self.configure_gradient_clipping(optimizer, *clip)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def log_training(self, terms: dict[str, Tensor | float], batch_size: int) -> None:
        """Training terms (what the `training_step` of a model that optimizes by hand passes
        here) are summed on the device and read every `log_every_n_steps` steps
        (their mean since the last read) and at the end of each epoch (the epoch's mean). The
        window means go straight to the loggers, at the step `self.log` would give them: a
        `self.log` call costs ~0.5 ms of host time here, more than a small model's whole step."""
        self.train_means.add(terms, batch_size)
        step = lightning_boundary.logging_step(self.trainer)  # as LearningRateMonitor
        # With accumulate_grad_batches > 1 several batches share a step: one row per step.
        if (self.global_step + 1) % self.trainer.log_every_n_steps or step == self._logged_step:
            return
        self._logged_step = step
        values = self._refuse_divergence(self.train_means.read("window"))
        metrics = {f"train/{k}": v for k, v in values.items()} | {"epoch": self.current_epoch}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def on_train_epoch_end(self) -> None:
        # For callbacks and results.json only: the loggers have the window means at this step,
        # and a second train/loss at one step would be a second meaning of the name.
        means = self.train_means.read("epoch")
        if means:
            self._refuse_divergence(means)
            self.log_dict({f"train/{k}": v for k, v in means.items()}, sync_dist=True, logger=False)
        if not self.automatic_optimization:
            self._step_plateau()

    def _step_plateau(self) -> None:
        """Lightning steps the LR schedulers of the models it optimizes; a ReduceLROnPlateau of a
        model optimized by hand is stepped here, once per epoch, on the epoch's monitor (the
        others after each batch, by `steps_per_call.step_schedulers`)."""
        for config in self.trainer.lr_scheduler_configs:
            if not steps_per_call.is_plateau(config):
                continue
            value = self.trainer.callback_metrics.get(self.monitor)
            if value is not None:  # no validation this epoch: nothing to judge the plateau by
                self.lr_scheduler_step(config.scheduler, value)

    def _refuse_divergence(self, means: dict[str, Tensor | float]) -> dict[str, float]:
        """The means as floats; stop the run when one is no longer finite: the step, the last
        finite values, the checkpoint that is still good and what to change. Checked where the
        terms are read anyway, so the check adds no wait for the device."""
        values = {name: float(value) for name, value in means.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if not bad:
            self._last_finite = values
            return values
        last = ", ".join(f"train/{k}={v:.4g}" for k, v in self._last_finite.items())
        raise self._diverged(f"train/{bad[0]} is {values[bad[0]]} (last finite: {last or 'none'})")

    def _diverged(self, what: str) -> TrainingDiverged:
        callbacks = self.trainer.checkpoint_callbacks
        paths = [getattr(c, name, "") for name in ("best_model_path", "last_model_path")
                 for c in callbacks]  # fmt: skip
        # A checkpoint callback names its file before writing it, and the write is what failed.
        good = next((p for p in paths if p and os.path.isfile(p)), "none written yet")
        return TrainingDiverged(
            f"training diverged by step {self.global_step}: {what}; the last good checkpoint: "
            f"{good}; try a lower model.optimizer.lr, a KL warm-up (model/kl_schedule=linear), "
            f"or trainer.gradient_clip_val=1.0"
        )

    # Evaluation noise: validation and test draw from generators of their own, reseeded at the
    # start of each pass, so their numbers compare across epochs and runs, and evaluating never
    # moves the training random stream (which a resumed run must continue exactly).

    def reseed_eval_noise(self) -> None:
        self._eval_generator = torch.Generator(self.device).manual_seed(0)

    def on_validation_epoch_start(self) -> None:
        self.reseed_eval_noise()
        self.eval_means = RunningMeans()

    def on_test_epoch_start(self) -> None:
        self.reseed_eval_noise()
        self.eval_means = RunningMeans()

    def on_validation_epoch_end(self) -> None:
        self.log_eval_means("val")

    def on_test_epoch_end(self) -> None:
        self.log_eval_means("test")

    def log_eval_means(self, split: str) -> None:
        """The pass's terms as `<split>/<name>`: each one's mean over every example of the split,
        on every process of a distributed run (sums and counts added over the processes)."""
        means = self.eval_means.read("epoch", total=self._sum_over_processes)
        # Already the same on every process: sync_dist only says so to Lightning.
        self.log_dict({f"{split}/{k}": v for k, v in means.items()}, sync_dist=True)

    def _sum_over_processes(self, tensor: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")

    # Compiling, checkpoints, optimizers.

    def on_fit_start(self) -> None:
        if self.hparams.get("compile"):
            self.core = torch.compile(
                self.per_example, mode=self.hparams.compile_mode, dynamic=False
            )

    def on_fit_end(self) -> None:
        self.core = self.per_example  # testing and inference run eager, on any batch size

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Never let diverged weights replace a good checkpoint (last.ckpt or the best).
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise self._diverged("the weights are no longer finite, so no checkpoint was written")
        checkpoint["rng_states"] = rng_states()
        checkpoint["train_means"] = self.train_means.state_dict()
        # What `Model.load_from_checkpoint` and `vaelab.load` build, wherever the file goes.
        checkpoint["model_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        # What the fit has measured so far: a resume with nothing left to train (a run stopped
        # while testing) reports these, as the uninterrupted run would have.
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        checkpoint["metrics"] = metrics | {
            f"train/{k}": v for k, v in self.train_means.peek("epoch").items()
        }
        # Every row logged before this checkpoint goes to disk before it: a resume from it
        # drops the rows after it and logs them again, so each step is logged exactly once.
        for logger in self.loggers:
            logger.save()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's, in the class that wrote the checkpoint: called on `Model` (or another
        class that the writer extends) it builds the writer's class; on an unrelated class (a
        VAE's for an IWAE's checkpoint) it says in one line which class the file holds."""
        checkpoint = read_checkpoint(str(checkpoint_path))
        if checkpoint.get("model_class") == f"{cls.__module__}.{cls.__qualname__}":
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        try:
            saved = saved_model_class(checkpoint, Path(checkpoint_path))
        except ConfigError as error:  # a class of the user's own, named in a file
            raise ConfigError(
                f"{error}; from Python, that class's own load_from_checkpoint loads it"
            ) from None
        if saved is None or saved is cls:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        if not issubclass(saved, cls):
            raise ConfigError(
                f"{checkpoint_path} is a checkpoint of {saved.__name__}, not of {cls.__name__}: "
                f"load it with vaelab.load('{checkpoint_path}'), which builds the class that "
                f"wrote it"
            )
        return saved.load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Only a resumed fit continues the random streams and the running means; loading
        # weights to test or to use them leaves the caller's random state alone.
        trainer = lightning_boundary.trainer_of(self)
        if trainer is None or trainer.state.fn != "fit":
            return
        self._check_optimizer_states(checkpoint.get("optimizer_states", []))
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
        if "train_means" in checkpoint:
            self.train_means.load_state_dict(checkpoint["train_means"], self.device)

    def _check_optimizer_states(self, states: list[dict]) -> None:
        """Refuse optimizer states that do not fit the parameters they would be given to (a
        checkpoint whose model registered its parameters in another order): torch loads them
        by position without a look, and a fused step over tensors of other shapes crashes the
        process."""
        for parameters, state in zip(self._optimized(), states, strict=False):
            for index, values in state.get("state", {}).items():
                shapes = {tuple(v.shape) for v in values.values() if torch.is_tensor(v) and v.dim()}
                have = tuple(parameters[index].shape) if index < len(parameters) else None
                if shapes - {have}:
                    raise ConfigError(
                        f"the checkpoint's optimizer state does not fit this model: parameter "
                        f"{index} is {have}, its state {sorted(shapes)[0]}; the checkpoint was "
                        f"written by another version of this model, so it cannot be resumed: "
                        f"start a new run"
                    )

    def _optimized(self) -> list[list[nn.Parameter]]:
        """The parameters of each optimizer, in their order: the model's, then each extra's."""
        extra = [list(parameters) for parameters, _ in self.extra_optimizers()]
        apart = {id(p) for parameters in extra for p in parameters}
        return [[p for p in self.parameters() if id(p) not in apart], *extra]

    def extra_optimizers(self) -> list[tuple[list[nn.Parameter], dict]]:
        """(parameters, optimizer config) of parts trained by optimizers of their own (a
        FactorVAE's discriminator): the model's optimizer leaves them out. A model that has any
        optimizes by hand (`automatic_optimization = False`) and steps them with `step_extra`."""
        return []

    def configure_optimizers(self):
        own, *parts = self._optimized()
        extra = [(part, c) for part, (_, c) in zip(parts, self.extra_optimizers(), strict=True)]
        # Plain lists for betas and the like: torch < 2.6 keeps them as given, and a ListConfig
        # in an optimizer's state would make its checkpoints refuse weights_only loading.
        optimizer = instantiate(self.hparams.optimizer, _convert_="all")(own)
        main: dict[str, Any] = {"optimizer": optimizer}
        if self.hparams.scheduler:
            # `interval` (epoch or step) is Lightning's, beside the scheduler it describes.
            config = dict(self.hparams.scheduler)
            interval = config.pop("interval", "epoch")
            scheduler = instantiate(config, _convert_="all")(optimizer)
            main["lr_scheduler"] = {"scheduler": scheduler, "interval": interval}
            if self.automatic_optimization:  # else _step_plateau reads it
                main["lr_scheduler"]["monitor"] = self.monitor
        if not extra:
            return main
        return [main, *({"optimizer": instantiate(c, _convert_="all")(p)} for p, c in extra)]

    def step_extra(self, optimizer: LightningOptimizer, loss: Tensor) -> None:
        """Back-propagate `loss` into the parts `optimizer` trains and step it, through the
        precision plugin (loss scaling under 16-mixed) but without counting a training step:
        trainer.global_step, and with it max_steps, the KL schedules and the logging windows,
        counts the batches the model's own optimizer stepped on, whatever else steps."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)
