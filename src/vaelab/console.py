"""What a vaelab command prints: a short header, a line per epoch, the test's progress and
results, the paths written; not the notices of libraries that say nothing about the run.

Each notice is dropped by its own text, so that a new warning still shows. The console shows a
part of the log, the run's train.log has all of it: lines logged with `extra=IN_FILE` (and the
Lightning notices in `_FILE_ONLY`) go to the file alone; in a multirun's job, the console shows
only warnings and lines logged with `extra=ON_CONSOLE` (parallel jobs' lines would interleave).
"""

import logging
import re
import warnings

from omegaconf import OmegaConf

IN_FILE = {"console": False}
ON_CONSOLE = {"console": True}

_TIPS = re.compile(r"💡 Tip: ")  # Lightning's advertisements, at every start
# logger name: the messages of it that are dropped
_NOTICES = {
    "lightning.pytorch.utilities.rank_zero": _TIPS,
    "lightning.fabric.utilities.rank_zero": _TIPS,
    # A warning for what is the normal first run against a new MLflow store.
    "lightning.pytorch.loggers.mlflow": re.compile(r"Experiment with name .* not found"),
}
# (message, category) of warnings dropped, each with why it is noise here
_WARNINGS = (
    # Lightning's own pytree copy builds torch's deprecated LeafSpec (torch >= 2.10).
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # A run directory always holds Hydra's files, and a resumed run its checkpoints.
    (r"Checkpoint directory .* exists and is not empty", UserWarning),
    # Several steps per call optimize by hand, and Lightning 2.6 then says that a step-interval
    # checkpoint holds the weights after the step: as every checkpoint does.
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps", UserWarning),
    # Lightning's hint where SLURM is installed but a run is not one of its jobs: a local run.
    (r"The `srun` command is available on your system but is not used", UserWarning),
)
# logger name: its messages that are kept for train.log (what the header and the epoch lines
# say already, or what does not apply to the run)
_FILE_ONLY = {
    "lightning.fabric.utilities.seed": re.compile(r"Seed set to"),
    "lightning.pytorch.utilities.rank_zero": re.compile(
        r"TPU available|HPU available|Restoring states from|Loaded model weights from|"
        r"`Trainer.fit` stopped"
    ),
}


class _DropNotices(logging.Filter):
    def __init__(self, pattern: re.Pattern):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet() -> None:
    """Drop the notices above from this process's console (idempotent)."""
    for message, category in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, pattern in _NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(pattern))
    # Lightning gives its logger a console handler of its own when imported; under Hydra's
    # logging setup every line would print twice.
    import lightning  # noqa: F401

    logging.getLogger("lightning").handlers.clear()


def in_multirun_job() -> bool:
    """Whether this process runs a job of a Hydra multirun (whatever the launcher)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# The launchers whose jobs write to the sweep's own console (submitit's and SLURM's have files
# of their own, where a job's lines do not interleave with another's).
_SHARING = ("BasicLauncher", "JoblibLauncher", "BatchedLauncher")


def _console_is_shared() -> bool:
    """Whether this process is a multirun's job whose output goes to the sweep's console."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun_job():
        return False
    return str(HydraConfig.get().launcher.get("_target_", "")).endswith(_SHARING)


class ConsoleFilter(logging.Filter):
    """The console's part of the log (conf/hydra/default.yaml gives it to the console handler):
    warnings always; Hydra's own lines (a sweep's job lines); a line's own `console` mark;
    nothing else from a job that shares the sweep's console; otherwise all but the notices kept
    for the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or record.name.startswith("hydra"):
            return True
        marked = getattr(record, "console", None)
        if marked is not None:
            return marked
        if _console_is_shared():
            return False
        pattern = _FILE_ONLY.get(record.name)
        return pattern is None or not pattern.match(record.getMessage())


class ConsoleFormatter(logging.Formatter):
    """`16:09:41 epoch 1/20 · ...`; a warning or an error says so and whose it is."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno < logging.WARNING:
            return text
        clock, _, message = text.partition(" ")
        return f"{clock} {record.levelname} [{record.name}] {message}"


def header(cfg, run_dir) -> list[str]:
    """The run in two lines: where it is, what it trains on what, and what the command line
    changed (the full config is in config.yaml; extras.print_config=full prints it)."""
    from hydra.core.hydra_config import HydraConfig

    from vaelab.runs.secrets import redact_argument

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = hydra.runtime.choices if hydra else {}
    overrides = list(hydra.overrides.task) if hydra else []
    model, data = (str(cfg[k]._target_).rsplit(".", 1)[-1] for k in ("model", "data"))
    model = f"{choices['model']} ({model})" if choices.get("model") else model
    data = f"{choices['data']} ({data})" if choices.get("data") else data
    given = " ".join(redact_argument(o) for o in overrides) or "none"
    return [f"Run {run_dir}", f"{model} on {data} · overrides: {given}"]


def metrics_line(metrics: dict, prefix: str = "test/") -> str:
    """What a stage measured, in one line: `test/elbo -28.62 · test/kl 0.23 · ...` (sorted)."""
    shown = {n: float(v) for n, v in sorted(metrics.items()) if n.startswith(prefix)}
    return " · ".join(f"{n} {v:.4g}" for n, v in shown.items())


def print_config(config: dict) -> None:
    """The composed config (resolved, secrets masked) as a tree of its top-level keys."""
    from rich import print as rich_print
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key, value in config.items():
        if isinstance(value, dict | list):
            text = OmegaConf.to_yaml(OmegaConf.create(value)).rstrip()
            tree.add(str(key)).add(Syntax(text, "yaml", background_color="default"))
        else:
            tree.add(f"{key}: {value}")
    rich_print(tree)
