"""OmegaConf resolvers that vaelab's configs use; registered when vaelab is imported."""

import itertools
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def _if_set(value: Any, then: Any, otherwise: Any) -> Any:
    """${if_set:${resume},A,B}: A when the value is set (not null or empty), else B."""
    return then if value not in (None, "") else otherwise


def _ne(a: Any, b: Any) -> bool:
    """${ne:A,B}: whether A differs from B."""
    return a != b


def _sweep_name() -> str | None:
    """${sweep_name:}: names the sweep a multirun job belongs to (its W&B group); None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    return f"{hydra.job.name}-{Path(hydra.sweep.dir).name}"


def _run_name(output_dir: str) -> str:
    """${run_name:${paths.output_dir}}: a run's name in the trackers, its directory's: the
    dated folder of a single run (2026-12-07_10-00-00), the sweep's folder and the job's
    number for a job of a multirun (2026-12-07_10-00-00/3), also when it is resumed alone."""
    path = Path(output_dir)
    in_sweep = _sweep_name() or (path.parent / "multirun.yaml").is_file()
    return f"{path.parent.name}/{path.name}" if in_sweep else path.name


_made: dict[str, str] = {}  # a folder new_dir made in this process: the topmost one it made


def _new_dir(path: str) -> str:
    """${new_dir:PATH}: PATH, made now, or PATH_1, PATH_2, ... where another run made it first
    (two runs started in the same second: their dated folders would be one). Made here, in one
    step that only one process can win, so no two runs share a folder. Cached with the config
    (Hydra copies the cache to a sweep's jobs), so a run asks once."""
    for n in itertools.count():
        candidate = os.path.abspath(path if n == 0 else f"{path}_{n}")
        top = candidate
        while not os.path.exists(os.path.dirname(top)) and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        try:
            os.makedirs(candidate)
        except FileExistsError:
            continue
        except OSError:  # not writable: the run directory's lock says so, in one line
            return candidate
        _made[candidate] = top
        return candidate


def unmake(path: str | Path) -> None:
    """Removes a folder `new_dir` made in this process, and the parents it made, while they are
    empty: a command refused before it wrote anything leaves nothing behind."""
    folder = os.path.abspath(path)
    top = _made.pop(folder, None)
    while top is not None:
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or gone): what is in it stays
            return
        if folder == top:
            return
        folder = os.path.dirname(folder)


def _new_run_dir(resume: Any, path: str) -> str:
    """${new_run_dir:${resume},PATH}: the run's directory: the resumed run's, else a new one at
    PATH (`new_dir`); one resolver, since OmegaConf resolves every argument of ${if_set:...}."""
    return str(resume) if resume not in (None, "") else _new_dir(path)


def register() -> None:
    resolvers = (("if_set", _if_set), ("ne", _ne), ("sweep_name", _sweep_name),
                 ("run_name", _run_name))  # fmt: skip
    for name, resolver in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    for name, resolver in (("new_dir", _new_dir), ("new_run_dir", _new_run_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
