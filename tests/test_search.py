"""Optuna search through the CLI: a persistent study that a second invocation continues."""

import json
import re

import optuna
import pytest

from tests.conftest import cli
from vaelab.errors import ConfigError
from vaelab.study import check_space
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
    code, out = cli(
        train_main, [*common, "hparams_search.n_trials=3", f"hydra.run.dir={tmp_path / 'a'}"],
        capfd, both=True,
    )  # fmt: skip
    assert code == 0, out[-3000:]
    name = "vae_digits_3ep"  # the study's model, data and budget
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == 3
    # Each trial says its values before its header (whose overrides are the command's).
    beta = study.trials[1].params["model.beta"]
    assert f"Trial 1: model.beta={beta:.4g} model.optimizer.lr=" in out
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
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == 5 and {t.state for t in study.trials} <= finished
    assert sorted(p.name for p in (tmp_path / "b").glob("trial_*")) == ["trial_003", "trial_004"]
    assert set(study.best_params) == {"model.beta", "model.optimizer.lr", "model.latent_dim"}
    # The continued study proposes new points, not the first ones again.
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == len(points), points
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.value < 0 for t in completed)  # val/elbo, maximised
    # The best trial, in a file beside the study, as the study has it.
    best = json.loads((tmp_path / "logs" / f"{name}.best.json").read_text())
    assert best["best_value"] == study.best_value and best["best_params"] == study.best_params
    assert best["best_trial"] == study.best_trial.number
    assert best["complete_trials"] == len(completed) and best["direction"] == "maximize"


QUICK = ["hparams_search=vae_optuna", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "callbacks.rich_progress_bar=null",
         "trainer.accelerator=cpu"]  # fmt: skip


def test_a_space_the_config_cannot_take_is_refused_before_any_trial(tmp_path, capfd, in_process):
    """`hparams_search=vae_optuna model=iwae` (which has no beta): one line, and no study."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, err = cli(train_main, [*QUICK, f"hparams_search.storage={storage}", "model=iwae"], capfd)
    assert code == 1 and len(err.strip().splitlines()) == 1, err[-2000:]
    assert (
        "hparams_search.params.model.beta: model.beta is not a key of this config (model IWAE): "
        "search another key, or another model" in err
    )
    assert optuna.get_all_study_names(storage) == []


@pytest.mark.parametrize(
    ("space", "said"),
    [
        ({"type": "categorical", "choices": [0, 8]}, "the space holds model.latent_dim=0: "
         "model.latent_dim=0: must be"),
        ({"type": "normal"}, "model.latent_dim.type='normal': use float, int or categorical"),
        ({"type": "int", "low": 2}, "model.latent_dim needs high for type int"),
    ],
)  # fmt: skip
def test_a_space_is_checked_at_its_ends(compose_train, space, said):
    cfg = compose_train("hparams_search=vae_optuna")
    cfg.hparams_search.params["model.latent_dim"] = space
    with pytest.raises(ConfigError, match=re.escape(said)):
        check_space(cfg)


def test_a_study_continues_only_under_the_settings_it_holds_fixed(tmp_path, capfd, in_process):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*QUICK, f"hparams_search.storage={storage}", "hparams_search.study_name=mine",
            "hparams_search.n_trials=1"]  # fmt: skip
    code, err = cli(train_main, [*args, f"hydra.run.dir={tmp_path / 'a'}"], capfd)
    assert code == 0, err[-3000:]
    # Another seed and more trials: the same study goes on.
    more = [*args[:-1], "hparams_search.n_trials=2", "seed=7", f"hydra.run.dir={tmp_path / 'b'}"]
    code, err = cli(train_main, more, capfd)
    assert code == 0, err[-3000:]
    # Another net: refused, with the name of a new study to give, and no trial added.
    other = [*args[:-1], "hparams_search.n_trials=3", "model.net.hidden=[32]",
             f"hydra.run.dir={tmp_path / 'c'}"]  # fmt: skip
    code, err = cli(train_main, other, capfd)
    assert code == 1, err[-3000:]
    assert "study mine was run with model.net.hidden=[512, 256] and this search has " in err
    assert "model.net.hidden=[32] (1 settings differ)" in err
    assert "start another study with hparams_search.study_name=mine_" in err
    assert len(optuna.load_study(study_name="mine", storage=storage).trials) == 2


def test_the_best_file_keeps_a_database_password_out(tmp_path):
    """A study on a database whose URL holds a password: the best file names the storage with
    the password masked."""
    from omegaconf import OmegaConf

    from vaelab.study import write_best

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    shown = "mysql+pymysql://vaelab:s3cret@127.0.0.1:3306/optuna"
    cfg = OmegaConf.create({"model": {"monitor": "val/elbo"}, "hparams_search": {
        "storage": shown, "best_file": str(tmp_path / "s.best.json")}})  # fmt: skip
    write_best(study, cfg)
    text = (tmp_path / "s.best.json").read_text()
    assert "s3cret" not in text and json.loads(text)["storage"].startswith("mysql+pymysql://")
