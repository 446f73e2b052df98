"""What a vaelab command prints: its own lines, the run's config, Lightning's device and summary
lines; not the notices of libraries that say nothing about the run.

Each notice is dropped by its own text, so that a new warning still shows.
"""

import logging
import re
import warnings

from omegaconf import OmegaConf

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
)


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
