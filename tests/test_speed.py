"""The speed machinery: the benchmark script end to end (its ratios are printed, not asserted),
batches cut on the device, and training terms accumulated on the device."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_here
from vaelab import compose
from vaelab.data import DigitsDataModule
from vaelab.data.batches import TensorBatches
from vaelab.errors import ConfigError
from vaelab.models.running_means import RunningMeans

ROOT = Path(__file__).resolve().parents[1]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_benchmark_runs_every_variant_and_their_test_elbos_agree(tmp_path, capfd):
    out = tmp_path / "benchmark.json"
    # The small-model option: 40 steps an epoch, where the host time per step shows most.
    small = ["--hidden", "64", "--latent", "8", "--batch-size", "32"]
    args = ["--device", "cpu", "--limit", "1280", "--epochs", "2", *small, "--out", str(out)]
    result = run_here([str(ROOT / "scripts" / "benchmark.py"), *args], tmp_path, capfd)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)  # the table, for whoever reads the log
    table = json.loads(out.read_text())
    expected = {"plain", "plain_compiled", "vaelab", "vaelab_k1", "vaelab_compiled"}
    assert expected <= set(table) and set(table) <= expected | {"pythae"}
    # auto took several steps per call (as many as ~0.1 s holds), and =1 one.
    assert table["vaelab"]["steps_per_call"] > 1 and table["vaelab_k1"]["steps_per_call"] == 1
    plain = table["plain"]["test_elbo"]
    for name, row in table.items():
        assert row["img_per_s"] > 0 and row["peak_mem_mb"] > 0
        # Images are counted from the optimizer steps taken, 32 images each.
        assert row["img_per_s"] == pytest.approx(32 / (row["ms_per_step"] / 1000))
        reference = "plain_compiled" if "compiled" in name else "plain"
        assert row["host_ms_per_step"] == pytest.approx(
            row["ms_per_step"] - table[reference]["ms_per_step"]
        )
        assert row["ratio_to_plain"] == pytest.approx(
            row["img_per_s"] / table["plain"]["img_per_s"]
        )
        low, high = row["ratio_to_plain_range"]
        assert low == high == pytest.approx(row["ratio_to_plain"])  # one repeat
        if name.endswith("compiled"):
            low, high = row["ratio_to_plain_compiled_range"]
            assert low == high == pytest.approx(row["ratio_to_plain_compiled"])
        # Same model, data, loss and number of steps: speed may not come from doing less.
        assert abs(row["test_elbo"] - plain) < 0.02 * abs(plain), (name, row["test_elbo"], plain)
    assert "| vaelab |" in result.stdout and "Machine:" in result.stdout


def test_batches_cut_on_the_device_are_the_host_batches():
    dm = DigitsDataModule(batch_size=64, binarize="none", seed=3)
    dm.setup()
    x, y = dm.splits["train"]
    host = TensorBatches(x, y, 64, shuffle=True, drop_last=True, seed=3)
    device = TensorBatches(x.to(DEVICE), y.to(DEVICE), 64, shuffle=True, drop_last=True, seed=3)
    for epoch in (0, 1):
        host.sampler.set_epoch(epoch)
        device.sampler.set_epoch(epoch)
        pairs = list(zip(host, device, strict=True))
        assert len(pairs) == len(x) // 64
        for (hx, hy), (dx, dy) in pairs:
            assert dx.device.type == DEVICE.type and dx.dtype == torch.float32
            assert torch.equal(hx, dx.cpu()) and torch.equal(hy, dy.cpu())


def test_on_device_choice():
    dm = DigitsDataModule()
    dm.setup()
    # On a CPU there is nothing to move; `true` keeps the data on any accelerator.
    assert not dm._keep_on(torch.device("cpu"))
    assert DigitsDataModule(on_device=True)._keep_on(torch.device("cuda"))
    assert not DigitsDataModule(on_device=False)._keep_on(torch.device("cuda"))
    with pytest.raises(
        ConfigError, match="data.on_device='sometimes': must be true, false or auto"
    ):
        compose("data.on_device=sometimes")


def test_running_means_weight_by_batch_size_and_restart_on_read():
    means = RunningMeans()
    batches = [(torch.tensor(1.0), 0.5, 10), (torch.tensor(4.0), 0.6, 30)]
    for loss, beta, size in batches:
        means.add({"loss": loss, "beta": beta}, size)
    window = means.read("window")
    assert window["loss"].item() == pytest.approx((1 * 10 + 4 * 30) / 40)
    assert window["beta"] == 0.6  # a schedule's value: the latest, not a mean
    means.add({"loss": torch.tensor(2.0), "beta": 0.7}, 40)
    assert means.read("window")["loss"].item() == pytest.approx(2.0)
    assert means.read("epoch")["loss"].item() == pytest.approx((10 + 120 + 80) / 80)
    assert means.read("epoch") == {}


def test_running_means_over_processes_add_their_sums_and_counts():
    """`total` stands for the strategy's sum over processes: here a second process that saw
    three examples with loss 8 beside this one's one example with loss 0."""
    means = RunningMeans()
    means.add({"loss": torch.tensor(0.0)}, 1)
    other = torch.tensor([24.0, 3.0])  # the other process's sum and count
    assert means.read("epoch", total=lambda t: t + other)["loss"].item() == pytest.approx(6.0)


def test_progress_bar_shows_every_batch_though_it_updates_every_refresh(compose_train, monkeypatch):
    """Digits with batch 64: 23 training batches per epoch, a refresh every 10, and the bar still
    ends each epoch at 23 of 23 (it is updated at an epoch's last batch too)."""
    from vaelab.callbacks import ProgressBar
    from vaelab.train import train

    # A bar is drawn only where it is seen redrawn: a terminal, and not CI.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")

    cfg = compose_train("data.batch_size=64", "trainer.max_epochs=2", "logger=none")
    counts = []

    class Spy(ProgressBar):
        def on_train_epoch_end(self, trainer, pl_module):
            task = self.progress.tasks[self.train_progress_bar_id]
            counts.append((task.completed, task.total))
            super().on_train_epoch_end(trainer, pl_module)

    _, objects = train(cfg, extra_callbacks=[Spy(refresh_rate=10)])
    batches = objects["trainer"].num_training_batches
    assert batches % 10 and counts == [(batches, batches)] * 2
