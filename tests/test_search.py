"""Optuna search through the CLI: a persistent study that a second invocation continues."""

import optuna

from tests.conftest import cli
from vaelab.train import main as train_main


def test_search_runs_and_a_second_invocation_continues_the_study(tmp_path, capfd, in_process):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = [
        "hparams_search=vae_optuna",
        f"hparams_search.storage={storage}",
        "hparams_search.pruner.n_startup_trials=1",
        "hparams_search.pruner.n_warmup_steps=1",
        "trainer.max_epochs=3",
        "callbacks.rich_progress_bar=null",
        "trainer.accelerator=cpu",
    ]
    code, err = cli(
        train_main, [*common, "hparams_search.n_trials=3", f"hydra.run.dir={tmp_path / 'a'}"], capfd
    )
    assert code == 0, err[-3000:]
    study = optuna.load_study(study_name="vae_digits", storage=storage)
    assert len(study.trials) == 3
    assert sorted(p.name for p in (tmp_path / "a").glob("trial_*")) == [
        "trial_000",
        "trial_001",
        "trial_002",
    ]
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert {t.state for t in study.trials} <= finished

    code, err = cli(
        train_main, [*common, "hparams_search.n_trials=5", f"hydra.run.dir={tmp_path / 'b'}"], capfd
    )
    assert code == 0, err[-3000:]
    study = optuna.load_study(study_name="vae_digits", storage=storage)
    assert len(study.trials) == 5 and {t.state for t in study.trials} <= finished
    assert sorted(p.name for p in (tmp_path / "b").glob("trial_*")) == ["trial_003", "trial_004"]
    assert set(study.best_params) == {"model.beta", "model.optimizer.lr", "model.latent_dim"}
    # The continued study proposes new points, not the first ones again.
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == len(points), points
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.value < 0 for t in completed)  # val/elbo, maximised
