"""Shared fixtures: configs composed through Hydra's compose API with a per-test run directory,
tiny MNIST-format datasets written in the real IDX format, console scripts run in this process."""

import importlib
import itertools
import logging
import os
import runpy
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from vaelab import compose, steps_per_call
from vaelab.config.config_dir import config_dir
from vaelab.data.idx import write_idx
from vaelab.runs import secrets

os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one thread each, also in the commands the tests start, or the
    # workers' thread pools fight over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

CONF = Path(config_dir())


@pytest.fixture(autouse=True, scope="session")
def steady_steps_per_call():
    """`trainer.steps_per_call=auto` sizes K by the time a call took; here every call reads as
    taking 12.5 ms (CALL_SECONDS / START), so that a run in this process takes the same Ks on any
    machine under any load: K = 8 x the steps of the call before, at most MOST."""
    tick = steps_per_call.CALL_SECONDS / steps_per_call.START  # each read: one tick later
    ticks = itertools.count()
    steps_per_call.clock = lambda: next(ticks) * tick
    yield
    steps_per_call.clock = time.perf_counter


@pytest.fixture(autouse=True)
def threads_left_as_found():
    """A test after which torch runs on another number of threads fails: every test after it
    on the worker would run oversubscribed (UMAP's projection once made them 5x slower)."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"torch's thread count went from {before} to {after} in this test")


@pytest.fixture(autouse=True)
def secrets_left_as_found():
    """The secret values a command met are masked in all later output of its process
    (vaelab.runs.secrets): one test's (the SLURM cluster's database password, `vaelab`) would
    otherwise mask text in every later test on the worker."""
    known = set(secrets._known)
    yield
    secrets._known.clear()
    secrets._known.update(known)


def pytest_collection_modifyitems(config, items):
    # What waits longest first (the SLURM module, the full Fashion-MNIST): started last, it
    # would run on alone while the other workers idle.
    items.sort(key=lambda item: not any(map(item.get_closest_marker, ("slurm", "slow"))))
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU: scripts/gpu_check.sh runs these on one")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_gpu)


@contextmanager
def console_here(folder: Path) -> Iterator[None]:
    """What running a console script in this process changes, put back afterwards: the working
    directory (`folder` while it runs), sys.argv, the root logger (Hydra points it at the
    streams of the moment), the signal handlers (Lightning ignores Ctrl-C after catching one)."""
    cwd, argv = os.getcwd(), sys.argv
    quiet = {n: os.environ.pop(n, None) for n in ("HYDRA_FULL_ERROR", "VAELAB_TRACEBACKS")}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handled = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.argv = argv
        os.environ.update({n: v for n, v in quiet.items() if v is not None})
        root.handlers[:] = handlers
        root.setLevel(level)
        for number, handler in handled.items():
            signal.signal(number, handler)


@pytest.fixture
def in_process(tmp_path):
    with console_here(tmp_path):
        yield


def console(main, args: list[str]) -> int:
    """The exit status of a console script's entry point run in this process (inside
    `console_here`): a CLI run without paying a second import of Lightning (~6 s a process)."""
    GlobalHydra.instance().clear()
    sys.argv = ["vaelab", *args]
    try:
        main()
    except SystemExit as exit:
        return 0 if exit.code is None else exit.code
    return 0


def cli(main, args: list[str], capsys, both: bool = False) -> tuple[int, str]:
    """(exit status, stderr) of `console(main, args)` (under the `in_process` fixture); `both`:
    stdout and stderr, in that order."""
    code = console(main, args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err if both else captured.err


# A command's environment changes, as a user's command has it: a developer who runs the suite
# under HYDRA_FULL_ERROR=1 still gets one-line errors; the command starts its own W&B service,
# not this process's (a killed command's open run would stay open in it). None: removed.
AS_A_USER = {"WANDB_MODE": "offline", "HYDRA_FULL_ERROR": None, "VAELAB_TRACEBACKS": None,
             "WANDB_SERVICE": None}  # fmt: skip

COMMANDS = {"vaelab-train": "train", "vaelab-eval": "evaluate", "vaelab-embed": "embed",
            "vaelab-sample": "sample"}  # fmt: skip


def run_here(
    args: list[str], cwd: Path, capfd, env: dict | None = None
) -> subprocess.CompletedProcess:
    """What tests.test_cli.run(args, cwd, env=env) gives for a vaelab command or a script
    (`args[0]`, see `entry_point`), run in this process: for tests whose point is what the command
    does or starts (SLURM jobs), not its own start-up (~9 s of imports a process)."""
    main = entry_point(args[0])
    changes = {**AS_A_USER, **(env or {})}
    saved = {name: os.environ.get(name) for name in changes}
    capfd.readouterr()
    try:
        _set_environment(changes)
        with console_here(cwd):
            code = console(main, args[1:])
    finally:
        _set_environment(saved)
    out = capfd.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def entry_point(program: str):
    """What a command runs: a console script's entry point (`vaelab-train`, or its path), a
    script's `__main__` (`scripts/benchmark.py`), a module's (`vaelab.sweep`, as `python -m`)."""
    name = Path(program).name
    if name in COMMANDS:
        return importlib.import_module(f"vaelab.{COMMANDS[name]}").main
    if name.endswith(".py"):
        return partial(runpy.run_path, program, run_name="__main__")
    return partial(_run_module, program)


def _run_module(name: str) -> None:
    with warnings.catch_warnings():
        # The module is imported already in this process (a fresh `python -m` has not): runpy
        # runs its code again as __main__, which is what `python -m` does, and says so.
        warnings.filterwarnings("ignore", f"'{name}' found in sys.modules", RuntimeWarning)
        runpy.run_module(name, run_name="__main__", alter_sys=True)


def _set_environment(values: dict) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def one_line_error(code: int, err: str) -> str:
    """The last line of stderr, after checking the command exited 1 with no traceback."""
    assert code == 1 and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    return last


FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def compose_train(tmp_path):
    """compose_train(*overrides) -> the train config, run dir in tmp_path, quick CPU settings."""
    return composer(tmp_path)


def composer(tmp_path: Path):
    """What compose_train gives, for a folder of the caller's (a module-scoped fixture's)."""
    made = []

    def make(*overrides: str, quick: bool = True) -> DictConfig:
        base = ["trainer=cpu", "callbacks.rich_progress_bar=null"] if quick else []
        # Unchecked: tests of the checks compose what they refuse.
        cfg = compose(*base, *overrides, output_dir=tmp_path / f"run{len(made)}", check=False)
        with open_dict(cfg):
            cfg.paths.data_dir = str(tmp_path / "data")
            cfg.paths.log_dir = str(tmp_path / "logs")  # MLflow's and Optuna's stores
            if quick:
                cfg.trainer.enable_model_summary = False
        made.append(cfg)
        return cfg

    return make


def write_mnist_like(folder: Path, n_train: int = 300, n_test: int = 100, gz: bool = True) -> Path:
    """Four IDX files in MNIST's names and format: random strokes on 28x28, ten classes."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        # Class-dependent bars so a model has something to learn.
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 6 + 2 * label, 4:24] = 255
        images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def mnist_dir(tmp_path) -> Path:
    return write_mnist_like(tmp_path / "mnist")


@pytest.fixture
def fashion_mnist_debian() -> Path:
    """The full Fashion-MNIST from Debian's dataset-fashion-mnist; CI installs it."""
    if not (FASHION_MNIST_DEBIAN / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION_MNIST_DEBIAN} is missing: .ci/run must install it")
        pytest.skip("apt-get install dataset-fashion-mnist to run the full Fashion-MNIST checks")
    return FASHION_MNIST_DEBIAN


@pytest.fixture
def http_mirror(tmp_path):
    """A folder served over HTTP on localhost, as a dataset mirror is."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
