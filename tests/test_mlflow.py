"""Runs tracked in MLflow on a local SQLite store, read back with MLflow's own client."""

import json
from pathlib import Path

import pytest
from omegaconf import open_dict

from tests.conftest import cli
from vaelab.train import main as train_main
from vaelab.train import train

mlflow = pytest.importorskip("mlflow")  # the mlflow extra; dev installs it
from mlflow.tracking import MlflowClient  # noqa: E402


def store(logs) -> MlflowClient:
    return MlflowClient(f"sqlite:///{logs / 'mlflow.db'}")


def test_a_run_and_its_resume_are_one_mlflow_run(compose_train, tmp_path):
    logs = tmp_path / "logs"
    overrides = ["experiment=digits", "logger=mlflow",
                 "tags=[baseline,digits]", "callbacks.images.every_n_epochs=1",
                 "+service.api_key=abc123", "metrics=none"]  # fmt: skip
    cfg = compose_train(*overrides, "trainer.max_epochs=2")
    results, _ = train(cfg)
    run_dir = cfg.paths.output_dir
    client = store(logs)
    (found,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert found.info.run_id == (tmp_path / "run0" / "mlflow_id").read_text().strip()
    assert found.info.status == "FINISHED"

    # The resolved config, flattened, with the secret masked; the tags, each a key.
    params = found.data.params
    assert params["model/beta"] == "1.0" and params["trainer/max_epochs"] == "2"
    assert params["model/net/hidden"] == str(list(cfg.model.net.hidden))
    assert params["service/api_key"] == "***"
    assert {"baseline", "digits"} <= set(found.data.tags)
    assert found.data.tags["vaelab.run_dir"] == str(run_dir)
    assert found.info.run_name == "run0"  # the run directory's name
    assert "vaelab.sweep" not in found.data.tags  # a single run belongs to no sweep
    assert json.loads((tmp_path / "run0" / "results.json").read_text())["tags"] == [
        "baseline",
        "digits",
    ]

    # Metrics by step, at each epoch's end, the last equal to the run's results.
    per_epoch = results["global_step"] // 2
    history = client.get_metric_history(found.info.run_id, "val/elbo")
    assert [m.step for m in history] == [per_epoch - 1, 2 * per_epoch - 1]
    assert history[-1].value == pytest.approx(results["val/elbo"])
    assert client.get_metric_history(found.info.run_id, "test/elbo")

    # The pictures and the run's record as artifacts.
    images = {a.path for a in client.list_artifacts(found.info.run_id, "images")}
    assert {"images/samples_epoch000.png", "images/reconstructions_epoch001.png"} <= images
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yaml", "results.json"} <= files
    local = mlflow.artifacts.download_artifacts(
        run_id=found.info.run_id, artifact_path="results.json", tracking_uri=client.tracking_uri
    )
    assert json.loads(Path(local).read_text())["val/elbo"] == results["val/elbo"]

    # Resumed with a raised limit: the same MLflow run goes on, its new limit a tag.
    resumed = compose_train(*overrides, f"resume={run_dir}", "trainer.max_epochs=3")
    with open_dict(resumed):
        resumed.paths.output_dir = run_dir
    train(resumed)
    (again,) = client.search_runs([found.info.experiment_id])
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "val/elbo")
    assert [m.step for m in history] == [per_epoch - 1, 2 * per_epoch - 1, 3 * per_epoch - 1]
    assert again.data.params["trainer/max_epochs"] == "2"  # MLflow never changes a param
    assert again.data.tags["resumed/trainer/max_epochs"] == "3"


def test_the_jobs_of_a_sweep_share_a_tag(tmp_path, capfd, in_process):
    sweep = tmp_path / "sweep"
    args = ["-m", "logger=mlflow", "debug=limit", "trainer=cpu", "seed=1,2",
            "metrics=none", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 0, out[-3000:]
    client = store(tmp_path / "logs")
    runs = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert len(runs) == 2 and {r.data.params["seed"] for r in runs} == {"1", "2"}
    assert {r.data.tags["vaelab.sweep"] for r in runs} == {f"train-{sweep.name}"}
    assert {r.info.run_name for r in runs} == {"sweep/0", "sweep/1"}
    # Nothing but the run's own lines: no notice of MLflow's store or Lightning's tips.
    assert "database tables" not in out and "not found. Creating it" not in out


@pytest.mark.parametrize("tags", ["tags=baseline", "tags=[a:b]", "tags=[" + "x" * 65 + "]"])
def test_tags_must_be_names_both_trackers_take(tmp_path, tags):
    from vaelab import compose
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a list of names of 1 to 64 letters"):
        compose(tags, output_dir=tmp_path / "run")


def test_a_store_that_cannot_be_opened_is_one_line(compose_train, tmp_path):
    from vaelab.config.instantiate import build_group
    from vaelab.errors import ConfigError

    cfg = compose_train("logger=mlflow")
    database = tmp_path / "logs" / "mlflow.db"
    database.parent.mkdir(parents=True)
    database.write_text("not a database, " * 100)
    with pytest.raises(
        ConfigError, match=f"logger=mlflow cannot open the store sqlite:///{database}"
    ):
        for logger in build_group(cfg.logger):  # the store opens at the first of these
            logger.log_hyperparams({"seed": 1})
    assert database.read_text() == "not a database, " * 100  # left as it was


def test_a_sweep_job_resumed_alone_keeps_its_run_name(tmp_path):
    """The name comes from the directory: a job of a multirun resumed by itself is still
    <sweep>/<job>, and so is its MLflow run."""
    from vaelab import compose

    job = tmp_path / "sweep" / "3"
    job.mkdir(parents=True)
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}\n")
    cfg = compose("logger=mlflow", output_dir=job)
    assert cfg.logger.mlflow.run_name == "sweep/3"
    assert compose("logger=wandb", output_dir=tmp_path / "alone").logger.wandb.name == "alone"
