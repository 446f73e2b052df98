"""Members of a sweep trained as one stacked model (vaelab.batched): a stacked step is each
member's own step."""

import copy
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from sklearn.datasets import load_digits

from vaelab.batched import Stack
from vaelab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# The presets with one optimizer and nothing moved outside the gradient; beta where they have one.
PRESETS = ["ae", "vae", "beta_vae", "iwae", "beta_tcvae", "dip_vae", "info_vae", "wae_mmd", "cvae"]
SEEDS_AND_WEIGHTS = [(1, 0.5), (2, 4.0), (3, 1.0)]


def _members(compose_train, preset: str, *overrides: str) -> list:
    members = []
    for seed, beta in SEEDS_AND_WEIGHTS:
        cfg = compose_train(f"model={preset}", *overrides)
        if "beta" in cfg.model:
            cfg.model.beta = beta
        if "dataset_size" in cfg.model:
            cfg.model.dataset_size = 1797
        torch.manual_seed(seed)  # each member's own initialisation
        members.append(instantiate(cfg.model, input_shape=[1, 8, 8]))
    return members


def _batches(steps: int, members: int, size: int = 16):
    """Digits in [0, 1] with their labels: each member its own batches, (members, size, ...)."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for step in range(steps):
        idx = order[step * members * size : (step + 1) * members * size].view(members, size)
        yield x[idx], torch.tensor(y)[idx]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_stacked_step_is_each_members_own_step(compose_train, preset):
    """Three members (their own seeds and betas) take five steps apart, each on its own batches
    and noise, and the same five steps stacked: the same losses and weights, to float32's
    precision. Plain SGD: the steps are the gradients themselves (Adam divides each gradient by
    its own scale, so that one near zero, summed in another order by the batched products, would
    move its weight by up to the learning rate either way; the next test covers Adam)."""
    members = _members(compose_train, preset)
    apart = [copy.deepcopy(m) for m in members]
    stack = Stack(members)
    stacked_opt = torch.optim.SGD(stack.parameters(), lr=1e-3)
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in apart]
    for x, y in _batches(5, len(members)):
        y = y if members[0].conditional else None
        noise = stack.noise(x)
        losses = stack.losses(stack.per_example(x, noise, y))
        stacked_opt.zero_grad()
        sum(terms["loss"] for terms in losses).backward()
        stacked_opt.step()
        for i, (model, opt) in enumerate(zip(apart, opts, strict=True)):
            condition = {"y": y[i]} if y is not None else {}
            terms = model.losses(model.per_example(x[i], *(part[i] for part in noise), **condition))
            torch.testing.assert_close(losses[i]["loss"].detach(), terms["loss"], rtol=1e-5, atol=0)
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
    stack.unstack()
    for i, (model, alone) in enumerate(zip(members, apart, strict=True)):
        for name, value in alone.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, msg=f"member {i}: {name}")


def test_one_adam_over_the_stack_takes_each_members_adam_step():
    """Adam, with weight decay, over stacked parameters given the members' gradients stacked:
    each member's slice moves as its own Adam moves it."""
    generator = torch.Generator().manual_seed(0)
    alone = [torch.randn(5, 3, generator=generator, requires_grad=True) for _ in range(4)]
    stacked = torch.stack([w.detach() for w in alone]).requires_grad_()
    opts = [torch.optim.AdamW([w], lr=0.1, weight_decay=0.1) for w in alone]
    stacked_opt = torch.optim.AdamW([stacked], lr=0.1, weight_decay=0.1)
    for _ in range(5):
        grads = [torch.randn(5, 3, generator=generator) * scale for scale in (1e-8, 1, 10, 1e3)]
        for w, grad, opt in zip(alone, grads, opts, strict=True):
            w.grad = grad
            opt.step()
        stacked.grad = torch.stack(grads)
        stacked_opt.step()
    torch.testing.assert_close(stacked.detach(), torch.stack(alone).detach(), rtol=0, atol=0)


def test_members_of_other_shapes_or_classes_are_refused(compose_train):
    vae = _members(compose_train, "vae")[0]
    wider = _members(compose_train, "vae", "model.latent_dim=4")[0]
    with pytest.raises(ConfigError, match="differ in the shape of .*latent_dim, the net"):
        Stack([vae, wider])
    with pytest.raises(ConfigError, match="classes VAE and AutoEncoder"):
        Stack([vae, _members(compose_train, "ae")[0]])


def test_the_sweep_benchmark_trains_the_members_apart_and_stacked_to_the_same_elbos(
    tmp_path, monkeypatch
):
    """`scripts/benchmark.py --sweep` (without the launcher's sweep, which it runs as a
    process): 8 members, 40 steps each, apart and stacked on the same batches and noise; each
    stacked member's test ELBO that of its twin apart."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    monkeypatch.chdir(tmp_path)
    import benchmark

    small = ["--hidden", "64", "--latent", "8", "--batch-size", "32", "--limit", "640"]
    table = benchmark.main(["--sweep", "--no-basic", "--epochs", "2", *small, "--out", "t.json"])
    assert set(table) == {"apart", "stacked"}
    assert json.loads((tmp_path / "t.json").read_text())["stacked"]["seconds"] > 0
    apart, stacked = table["apart"]["test_elbos"], table["stacked"]["test_elbos"]
    assert len(apart) == len(stacked) == 8
    for alone, together in zip(apart, stacked, strict=True):
        assert alone == pytest.approx(together, abs=0.05)
    assert table["stacked"]["speedup_over_apart"] == pytest.approx(
        table["apart"]["seconds"] / table["stacked"]["seconds"]
    )
