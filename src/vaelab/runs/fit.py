"""A built run fitted, its best checkpoint tested, and what it measured collected into
results.json."""

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException

from vaelab.console import IN_FILE, metrics_line
from vaelab.embeddings import disentanglement_scores
from vaelab.loggers.wandb import ID_FILE, finish_run
from vaelab.runs.build import Run
from vaelab.runs.preemption import preempted
from vaelab.runs.resume import limits, results_at
from vaelab.runs.run_dir import provenance, write_results

log = logging.getLogger(__name__)


def _test(run: Run) -> tuple[dict[str, Any], str]:
    """Test the best checkpoint (else the final weights); score the disentanglement where the
    data has factors. What was measured, the fit's own included, and the checkpoint tested."""
    trainer, plan = run.trainer, run.plan
    # A fit with nothing left to train measured nothing itself: its checkpoint did.
    metrics = dict((plan.start or {}).get("metrics", {})) | dict(trainer.callback_metrics)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    log.info(f"Testing {_shown(best, plan.run_dir) if best else 'the final weights'}")
    trainer.test(
        run.model, datamodule=run.datamodule, ckpt_path=best or None, weights_only=True,
        verbose=False,  # the line below, not Lightning's table
    )  # fmt: skip
    metrics.update(trainer.callback_metrics)
    if trainer.is_global_zero:
        log.info(metrics_line(trainer.callback_metrics))
        scores = disentanglement_scores(run.model, run.datamodule, plan.config.get("metrics"))
        scores = {f"test/{name}": value for name, value in scores.items()}
        metrics.update(scores)
        if scores:
            log.info(metrics_line(scores))
        for logger in run.loggers if scores else ():
            logger.log_metrics(scores, step=trainer.global_step)
            logger.save()
    return metrics, best


def _nothing_was_left(run: Run) -> bool:
    """Whether a resume found nothing left to train and results.json describes its checkpoint
    (a run whose other limit held); a run stopped while testing is tested now."""
    plan, step = run.plan, run.trainer.global_step
    return bool(plan.resumes and plan.start and step == plan.start["global_step"]) and (
        results_at(plan.run_dir, step) is not None
    )


def fit_and_test(run: Run) -> tuple[dict[str, Any], str] | None:
    """Fit from the plan's checkpoint, then test: what was measured and the checkpoint tested;
    None when a resume found nothing left to do. SIGTERM ends in Preempted, saying how to
    continue; the W&B run ends with the job either way."""
    trainer, plan = run.trainer, run.plan
    per_call = f", {run.steps} optimizer steps per Lightning step" if run.steps > 1 else ""
    per_call += " to start, then as many as ~0.1 s holds" if run.adapt else ""
    log.info(f"Training in {plan.run_dir}{per_call}", extra=IN_FILE)
    if plan.resumes and plan.checkpoint is not None:
        log.info(f"Resuming from {plan.checkpoint}")
    elif plan.resumes:
        log.warning(f"No checkpoint in {plan.run_dir} yet: starting the run from the beginning")
    failed = True
    try:
        trainer.fit(
            run.model, datamodule=run.datamodule, ckpt_path=plan.checkpoint, weights_only=True
        )
        tested = None if _nothing_was_left(run) else _test(run)
        failed = False
        return tested
    except SIGTERMException:
        raise preempted(plan.run_dir, run.on_sigterm.saved) from None
    finally:
        finish_run(failed)


def collect_results(run: Run, metrics: dict[str, Any], best_ckpt: str) -> dict[str, Any]:
    """results.json: the metrics as numbers, where the run is and what it finished under (a
    resume that raises neither limit has nothing to do), its provenance; written by rank zero
    and given to the loggers that keep files."""
    cfg, run_dir, trainer = run.plan.config, run.plan.run_dir, run.trainer
    results = {name: float(value) for name, value in metrics.items()}
    results.update(run_dir=str(run_dir), best_ckpt=best_ckpt, seed=cfg.seed, **provenance())
    results["tags"] = [str(tag) for tag in cfg.get("tags") or []]
    results.update(global_step=trainer.global_step, **limits(cfg))
    if (run_dir / ID_FILE).is_file():
        results["wandb_id"] = (run_dir / ID_FILE).read_text().strip()
    if trainer.is_global_zero:
        write_results(run_dir, results)
        for logger in run.loggers:
            if hasattr(logger, "log_file"):  # the run's record beside its metrics
                logger.log_file(run_dir / "config.yaml")
                logger.log_file(run_dir / "results.json")
        written = sorted(p for p in run_dir.iterdir() if not p.name.startswith("."))
        names = [p.name + "/" * p.is_dir() for p in written]
        log.info(f"Wrote {', '.join(names)} in {run_dir}")
    return results


def _shown(path: str, run_dir) -> str:
    """A path inside the run directory as seen from it (the header says where that is)."""
    return str(Path(path).relative_to(run_dir)) if Path(path).is_relative_to(run_dir) else path
