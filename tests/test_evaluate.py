"""vaelab-eval rebuilds a run's model and data from its checkpoint and config.yaml."""

import json
import shutil
import sys
from pathlib import Path

from tests.conftest import cli
from tests.test_cli import run
from vaelab.evaluate import main as eval_main
from vaelab.train import main as train_main

VAELAB_EVAL = shutil.which("vaelab-eval", path=str(Path(sys.executable).parent))


def test_eval_reproduces_the_training_runs_test_metrics(tmp_path, capfd, in_process):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    args = [
        "data.batch_size=32",
        "trainer.max_epochs=25",
        "trainer.accelerator=cpu",
        "iw_samples=50",
        "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={train_dir}",
    ]
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    before = (train_dir / "results.json").read_text()
    results = json.loads(before)

    args = [
        f"ckpt_path={results['best_ckpt']}",
        "iw_samples=50",
        "trainer=cpu",
        f"hydra.run.dir={eval_dir}",
    ]
    code, out = cli(eval_main, args, capfd, both=True)
    assert code == 0, out[-3000:]
    # The console: the metrics and the probes a line each, where results.json went; no table.
    assert "Test metric" not in out and f"Wrote results.json in {eval_dir}" in out
    assert sum(" · test/elbo " in line for line in out.splitlines()) == 1
    metrics = json.loads((eval_dir / "results.json").read_text())
    for name in ("loss", "recon", "kl", "elbo", "nll_iw", "active_units"):
        assert abs(metrics[f"test/{name}"] - results[f"test/{name}"]) < 1e-4, name
    assert metrics["test/linear_probe_acc"] > 0.85 and metrics["test/knn_acc"] > 0.85
    assert (train_dir / "results.json").read_text() == before  # eval writes only its own dir


def test_eval_without_a_checkpoint_is_a_one_line_error(tmp_path):
    """The shell of the real command: nothing on stderr but the line."""
    result = run([VAELAB_EVAL, f"ckpt_path={tmp_path / 'none.ckpt'}"], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: ckpt_path='{tmp_path / 'none.ckpt'}': no such file"
    ]
