"""Lightning's WandbLogger, kept inside the run directory and continued by a resume.

- Its files go under <run dir>/wandb, and the run id into <run dir>/wandb_id: a run directory
  that already has an id is a run being resumed, and its W&B run is continued.
- Without an API key it logs offline with a one-line notice, never a login prompt; `wandb sync`
  uploads the run later.
- Secret-looking values typed on the command line are masked in what W&B records of it.
"""

import logging
import netrc
import os
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from vaelab.errors import ConfigError
from vaelab.extras import require
from vaelab.lightning_boundary import drop_wandb_anonymous
from vaelab.runs.secrets import redact_argument

log = logging.getLogger(__name__)

ID_FILE = "wandb_id"


def finish_run(failed: bool = False) -> None:
    """End this process's W&B run, if one is open, its files whole on disk when this returns:
    the next job of a multirun starts a run of its own, and whoever reads the run next in this
    process (a notebook, `wandb sync`, a test) reads all of it. wandb's service writes the run's
    file and may close it after `finish()` returns; shutting the service down waits for that
    (the next run starts another service)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
        wandb.teardown()


def api_key_configured() -> bool:
    """Whether wandb would find credentials: the environment, or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger(LightningWandbLogger):
    def __init__(
        self, save_dir: str, mode: str | None = "online", run_id: str | None = None, **kwargs: Any
    ):
        require("wandb", "wandb", "logger=wandb")
        mode = mode or "online"  # WANDB_MODE set but empty
        if mode not in ("online", "offline", "disabled"):
            raise ConfigError(f"logger.wandb.mode={mode!r}: use online, offline or disabled")
        if mode == "online" and not api_key_configured():
            log.warning(
                f"W&B: no API key (wandb login, or WANDB_API_KEY): logging offline to "
                f"{save_dir}/wandb; upload later with `wandb sync {save_dir}/wandb/offline-run-*`"
            )
            mode = "offline"
        id_file = Path(save_dir) / ID_FILE
        if run_id is not None:  # a given run, e.g. the training run that vaelab-sample adds to
            resume = "allow"
        elif id_file.is_file():
            run_id = id_file.read_text().strip()
            # An offline run cannot ask the server whether the run exists (wandb warns that it
            # ignores `resume` there); `wandb sync` appends to the run of that id.
            resume = "must" if mode == "online" else None
        else:
            run_id, resume = uuid.uuid4().hex[:8], "allow"
            if rank_zero_only.rank == 0 and mode != "disabled":
                id_file.parent.mkdir(parents=True, exist_ok=True)
                id_file.write_text(run_id + "\n")
        if kwargs.get("settings") is not None:  # a config's mapping: wandb takes a plain dict
            kwargs["settings"] = dict(kwargs["settings"])
        super().__init__(save_dir=save_dir, id=run_id, resume=resume, mode=mode, **kwargs)
        drop_wandb_anonymous(self)

    @property
    def experiment(self):
        # W&B keeps the command line in the run's metadata: a secret typed there must not be.
        argv = sys.argv
        sys.argv = [argv[0], *map(redact_argument, argv[1:])]
        try:
            return super().experiment
        finally:
            sys.argv = argv

    def log_picture(self, name: str, path: Path, step: int) -> None:
        """A PNG the run wrote, as a W&B image at `step` (from the file: uint8, as drawn)."""
        self.log_image(name, [str(path)], step=step)
