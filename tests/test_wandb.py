"""Runs tracked in W&B, read back from the offline run's own files."""

import json
import re

import numpy as np
import yaml
from PIL import Image

from tests.conftest import cli
from tests.wandb_records import run_contents
from vaelab.train import main as train_main

QUICK = ["callbacks.rich_progress_bar=null", "trainer.accelerator=cpu"]


def test_offline_run_holds_config_metrics_and_images(tmp_path, capfd, in_process, monkeypatch):
    run_dir = tmp_path / "run"
    args = [
        *QUICK,
        "logger=wandb",
        "logger.wandb.tags=[digits,test]",
        "trainer.max_epochs=3",
        "callbacks.images.every_n_epochs=1",
        "+service.api_key=abc123",
        f"hydra.run.dir={run_dir}",
    ]
    # No WANDB_MODE and no credentials: offline, with a one-line notice and no prompt.
    for name in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out = cli(train_main, args, capfd, both=True)
    assert code == 0, out[-3000:]
    assert "W&B: no API key" in out
    # wandb keeps quiet (settings.quiet): no history and summary at the end, whatever its
    # release; the run's wandb/ folder is among what the run says it wrote.
    assert "Run history" not in out and "Run summary" not in out
    assert re.search(r"Wrote .*wandb/.* in ", out)

    contents = run_contents(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert contents["id"] == results["wandb_id"] == (run_dir / "wandb_id").read_text().strip()
    assert contents["name"] == "run"  # the run directory's name

    # The resolved config, nested as in config.yaml, with the secret masked everywhere.
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert {k: v for k, v in contents["config"].items() if k != "_wandb"} == config
    assert contents["config"]["model"]["net"]["hidden"] == [512, 256]
    assert config["service"]["api_key"] == "***"
    assert "abc123" not in (run_dir / "config.yaml").read_text() + json.dumps(results)
    # Nor anywhere else in the run directory: Hydra's record, W&B's files, the logs.
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and b"abc123" in p.read_bytes()]
    assert leaked == []

    # Metrics under their names at the steps they belong to.
    val = [
        (r["trainer/global_step"], r["val/elbo"]) for r in contents["history"] if "val/elbo" in r
    ]
    assert [step for step, _ in val] == [11, 23, 35]
    assert val[-1][1] == results["val/elbo"]
    assert any("test/elbo" in r for r in contents["history"])

    # Images as uint8 PNGs that are not black.
    for name in ("reconstructions", "traversals", "kl_per_dim"):
        assert any(f"images/{name}" in r for r in contents["history"]), name
    pictures = [r for r in contents["history"] if "images/samples" in r]
    assert len(pictures) >= 3
    (filename,) = pictures[-1]["images/samples"]["filenames"]
    media = contents["dir"] / "files" / filename
    pixels = np.asarray(Image.open(media))
    assert pixels.dtype == np.uint8 and pixels.max() > 100


def test_each_job_of_a_multirun_has_its_own_wandb_run(tmp_path, capfd, in_process):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *QUICK,
        "logger=wandb",
        "debug=limit",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    ids = [run_contents(job)["id"] for job in jobs]
    assert len(jobs) == 2 and len(set(ids)) == 2
    assert ids == [(job / "wandb_id").read_text().strip() for job in jobs]
    configs = [run_contents(job)["config"] for job in jobs]
    assert [c["seed"] for c in configs] == [1, 2]
    # The jobs of one sweep share a W&B group named after it.
    assert configs[0]["logger"]["wandb"]["group"] == configs[1]["logger"]["wandb"]["group"]
    assert configs[0]["logger"]["wandb"]["group"] == f"train-{sweep.name}"
    # Each named after its directory: the sweep's and the job's number.
    assert [run_contents(job)["name"] for job in jobs] == ["sweep/0", "sweep/1"]
