"""What a run leaves in its directory besides checkpoints and logs: its resolved config and its
results, with what is needed to reproduce them."""

import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError, DataError
from vaelab.runs.secrets import redact, redact_argument

_PACKAGES = ("vaelab", "torch", "torchvision", "lightning", "hydra-core", "omegaconf", "wandb")


def atomic_write(path: Path, text: str, shared: bool = False) -> None:
    """Write beside the target and rename over it, so a crash or a full disk never leaves half
    a file. `shared`: processes may write the same file at once (a study's workers), so each
    writes a temporary file of its own."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" if shared else f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, newline="")  # as given: csv writes its own line ends
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise DataError(
            f"cannot write {path}: {error.strerror or error}; the previous {path.name}, if any, "
            f"is untouched"
        ) from error


def write_config(cfg: DictConfig, run_dir: Path) -> None:
    """config.yaml: the run's config, resolved, with secret-looking values masked."""
    config = redact(OmegaConf.to_container(cfg, resolve=True))
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))


def _git_commit() -> str | None:
    """The commit of the vaelab source in use, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def provenance() -> dict[str, Any]:
    info: dict[str, Any] = {
        "command": shlex.join([Path(sys.argv[0]).name, *map(redact_argument, sys.argv[1:])]),
        "versions": _versions(),
    }
    commit = _git_commit()
    if commit:
        info["git_commit"] = commit
    return info


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    """results.json: flat, metric names as keys; non-finite numbers become null (valid JSON)."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in results.items()
    }
    atomic_write(run_dir / "results.json", json.dumps(clean, indent=2, sort_keys=True) + "\n")


def optimized_value(cfg: DictConfig, results: dict[str, Any], required: bool) -> float | None:
    """The run's `optimized_metric` in its results: what a sweeper or a search optimises. A run
    that did not measure it (it never validated, say) has None, refused where `required`."""
    name = cfg.get("optimized_metric")
    value = results.get(name) if name else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if required:
        measured = sorted(k for k in results if k.startswith(("val/", "test/")))
        raise ConfigError(
            f"optimized_metric={name} is {value} in the results of {cfg.paths.output_dir}, so "
            f"there is nothing to optimise: name one the run measures "
            f"({', '.join(measured[:8]) or 'none: it never validated'}), or let it validate "
            f"(trainer.check_val_every_n_epoch, trainer.val_check_interval)"
        )
    return None
