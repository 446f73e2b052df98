"""vaelab-train: fit an autoencoder or a VAE, then test its best checkpoint.

vaelab-train model=vae data=fashion_mnist trainer.max_epochs=10 model.beta=4
vaelab-train resume=logs/train/runs/2026-11-26_07-00-00 trainer.max_epochs=20

A run is planned (vaelab.runs.preflight: the config checked, a resume resolved, the run
directory held), built (vaelab.runs.build), fitted and tested (vaelab.runs.fit).
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaelab.cli.main import hydra_main
from vaelab.console import ON_CONSOLE
from vaelab.runs.preemption import preemptible
from vaelab.runs.preflight import planned
from vaelab.runs.resume import finished_message, results_at
from vaelab.runs.run_dir import optimized_value

log = logging.getLogger(__name__)


def _this_command_line() -> list[str] | None:
    """The overrides typed for this invocation, when Hydra started it."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def train(
    cfg: DictConfig, extra_callbacks: Sequence[Any] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build data, model, callbacks, loggers and trainer from `cfg`; fit; test the best checkpoint.

    With `cfg.resume` set, the run in that directory is continued instead. `extra_callbacks` join
    those of the config (a search adds its pruning). Returns the results written to
    results.json and the objects built (`datamodule`, `model`, `trainer`), with the config the
    run ran under (`config`).

    The run directory is held as a vaelab command holds it, also when `train` is called from
    Python: a second run into it, from this process or another, is refused.
    """
    # Imported here: a command's config is checked before torch and Lightning load (~8 s).
    from vaelab.runs import build, fit
    from vaelab.runs.threads import torch_threads

    with (
        planned(cfg, _this_command_line()) as plan,
        torch_threads(plan.config.trainer.get("threads")),
    ):
        if plan.finished is not None:  # said also by a sweep's job, which is otherwise quiet
            log.info(plan.note, extra=ON_CONSOLE)
            return plan.finished, {"config": plan.config}
        run = build.build(plan, list(extra_callbacks))
        objects = dict(datamodule=run.datamodule, model=run.model, trainer=run.trainer)
        objects["config"] = plan.config
        tested = fit.fit_and_test(run)
        if tested is None:  # a resume with nothing left to do: its results stand
            log.info(finished_message(plan.run_dir))
            return results_at(plan.run_dir, run.trainer.global_step), objects
        return fit.collect_results(run, *tested), objects


def _optimizes(hydra_cfg: DictConfig) -> bool:
    """Whether a sweeper reads the value the task returns (Hydra's basic sweeper does not)."""
    sweeper = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="") or "")
    return hydra_cfg.mode == RunMode.MULTIRUN and not sweeper.endswith("BasicSweeper")


@hydra_main("train")
def main(cfg: DictConfig) -> float | None:
    """Train (or search), and hand a sweeper the value of the run's own `optimized_metric`."""
    with preemptible(Path(cfg.paths.output_dir)):
        if cfg.get("hparams_search"):
            from vaelab.search import search

            return search(cfg, train)
        results, _ = train(cfg)
    return optimized_value(cfg, results, required=_optimizes(HydraConfig.get()))


if __name__ == "__main__":
    main()
