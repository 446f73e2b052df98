"""vaelab-eval: the test metrics of a checkpoint, with the model and data rebuilt from the
training run's own config.yaml.

    vaelab-eval ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt iw_samples=1000
"""

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vaelab.cli.main import hydra_main
from vaelab.console import metrics_line, quiet
from vaelab.runs.preemption import preemptible

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test the checkpoint on the run's data (or `cfg.data`); probe its embeddings."""
    import lightning as L

    from vaelab.embeddings import disentanglement_scores, embed, probe_accuracies
    from vaelab.runs.run_dir import provenance, write_results
    from vaelab.runs.targets import trusted_targets
    from vaelab.runs.trained import inference_trainer, load_trained, placed, trained_data

    quiet()
    L.seed_everything(cfg.seed)
    model, run_cfg, checkpoint = load_trained(cfg.ckpt_path, trusted_targets(cfg))
    output_dir = Path(cfg.paths.output_dir)

    datamodule = trained_data(cfg.get("data"), run_cfg, checkpoint, "test")
    model.iw_samples = cfg.iw_samples  # read by the models that report test/nll_iw
    trainer = inference_trainer(cfg.trainer)
    log.info(f"Testing {cfg.ckpt_path} with {cfg.iw_samples} importance samples per example")
    # One line of metrics below, not Lightning's table.
    (metrics,) = trainer.test(model, datamodule=datamodule, weights_only=True, verbose=False)
    log.info(metrics_line(metrics))
    with placed(model, trainer) as model:
        train_codes = embed(model, datamodule.loader("train"))
        test_codes = embed(model, datamodule.test_dataloader())
        probes = probe_accuracies(train_codes, test_codes)
        probes |= disentanglement_scores(
            model, datamodule, cfg.get("metrics"), (train_codes, test_codes)
        )
    if probes:
        log.info(metrics_line({f"test/{name}": value for name, value in probes.items()}))

    results = {name: float(value) for name, value in metrics.items()}
    results.update({f"test/{name}": value for name, value in probes.items()})
    results.update(ckpt_path=cfg.ckpt_path, run_dir=str(output_dir), **provenance())
    results["iw_samples"] = cfg.iw_samples
    write_results(output_dir, results)
    log.info(f"Wrote results.json in {output_dir}")
    return results


@hydra_main("eval", data_from_run=True)
def main(cfg: DictConfig) -> None:
    with preemptible(Path(cfg.paths.output_dir), resumable=False):
        evaluate(cfg)


if __name__ == "__main__":
    main()
