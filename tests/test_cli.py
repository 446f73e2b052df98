"""The real console script, as a user runs it: in a process of its own, and through Hydra's
search path in this one."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import AS_A_USER, cli
from tests.helpers import metrics_rows
from vaelab.train import main as train_main

VAELAB_TRAIN = shutil.which("vaelab-train", path=str(Path(sys.executable).parent))


def run(
    args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a command as a user would; `env` adds variables, or removes those set to None."""
    env = {**os.environ, **AS_A_USER, **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_default_run_writes_the_whole_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run(
        [
            VAELAB_TRAIN,
            "trainer.max_epochs=6",
            "trainer.accelerator=cpu",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    for path in [".hydra/config.yaml", ".hydra/overrides.yaml", "config.yaml", "metrics.csv"]:
        assert (run_dir / path).is_file(), path
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    results = json.loads((run_dir / "results.json").read_text())
    assert Path(results["best_ckpt"]) == run_dir / "checkpoints" / "best.ckpt"
    assert Path(results["best_ckpt"]).is_file()
    assert results["run_dir"] == str(run_dir) and results["seed"] == 42
    for split in ("val", "test"):
        for name in ("loss", "recon", "kl", "elbo"):
            assert isinstance(results[f"{split}/{name}"], float), f"{split}/{name}"
    assert results["test/elbo"] < 0
    assert results["versions"]["torch"] and results["command"].startswith("vaelab-train ")
    assert len(results.get("git_commit", "x" * 40)) == 40

    # val/elbo improves from the first epoch to the last.
    val = [float(row["val/elbo"]) for row in metrics_rows(run_dir) if row["val/elbo"]]
    assert len(val) == 6 and val[-1] > val[0]

    for name in ("reconstructions.png", "samples.png", "samples_epoch004.png", "traversals.png"):
        with Image.open(run_dir / "images" / name) as image:
            image.verify()
        with Image.open(run_dir / "images" / name) as image:
            assert min(image.size) > 8

    # The console: a header (where, what, the overrides), a line each epoch (no terminal, so no
    # bar), the test's metrics, what was written where; none of the notices of libraries, and
    # no config tree (train.log has every line, config.yaml the config).
    out = result.stdout + result.stderr
    lines = out.splitlines()
    assert f"Run {run_dir}" in lines[0] and "vae (VAE) on digits" in lines[1], lines[:2]
    assert "overrides: trainer.max_epochs=6 trainer.accelerator=cpu" in lines[1]
    assert [f"epoch {i}/6 · step" in out for i in range(1, 7)] == [True] * 6
    assert re.search(r"test/elbo -\d+\.\d+ · ", out) and "Testing checkpoints/best.ckpt" in out
    assert "results.json" in lines[-1] and lines[-1].endswith(f" in {run_dir}"), lines[-1]
    assert len(lines) <= 6 + 8 and "├──" not in out, out
    assert_quiet(out)
    log = (run_dir / "train.log").read_text()
    assert "Seed set to 42" in log and "Restoring states from" in log and "GPU available" in log


# What a run must not print: Lightning's advertisements and limit_* notices, warnings.
NOTICES = re.compile(
    r"Tip:|litlogger|litmodels|Trainer\(limit_|Warning|deprecated|"
    r"exists and is not empty|database tables|not found. Creating it",
    re.IGNORECASE,
)


def assert_quiet(out: str) -> None:
    noise = [line for line in out.splitlines() if NOTICES.search(line)]
    assert noise == [], noise


def test_python_dash_m_and_the_written_config_is_resolved(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "vaelab.train",
        "debug=fdr",
        "model=ae",
        f"hydra.run.dir={run_dir}",
        "extras.print_config=full",
    ]
    result = run(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The whole config as a tree, asked for, after the header.
    assert result.stdout.count("├── trainer") == 1 and "max_epochs: 20" in result.stdout
    config = (run_dir / "config.yaml").read_text()
    assert "${" not in config and "vaelab.models.AutoEncoder" in config
    assert json.loads((run_dir / "results.json").read_text())["test/recon"] > 0


def test_own_configs_through_hydra_searchpath(tmp_path, capfd, in_process):
    own = tmp_path / "my_conf" / "model" / "net"
    own.mkdir(parents=True)
    (own / "tiny.yaml").write_text(
        "_target_: vaelab.models.nets.mlp\nhidden: [32]\nactivation: tanh\n"
    )
    run_dir = tmp_path / "run"
    args = [
        f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
        "model/net=tiny",
        "debug=fdr",
        f"hydra.run.dir={run_dir}",
    ]
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    assert "hidden:\n    - 32\n    activation: tanh" in (run_dir / "config.yaml").read_text()


def test_a_long_test_stage_says_how_far_it_is(compose_train, caplog):
    """Where no progress bar is drawn, the test stage (test/nll_iw's importance samples) says
    every `every_s` seconds how many batches are done: here every batch."""
    from vaelab.callbacks import EpochLog
    from vaelab.train import train

    cfg = compose_train("trainer.max_epochs=1", "callbacks.images=null", "data.batch_size=64")
    with caplog.at_level(logging.INFO, logger="vaelab.callbacks.epoch_log"):
        train(cfg, extra_callbacks=[EpochLog(every_s=0)])
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("test ")]
    batches = -(-180 // 64)  # the digits' test split
    assert [s.split(" · ")[0] for s in said] == [f"test {i}/{batches} batches" for i in
                                                  range(1, batches + 1)]  # fmt: skip
