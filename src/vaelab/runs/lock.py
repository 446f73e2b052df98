"""One process per run directory: an OS file lock (the filelock package: fcntl or msvcrt),
which the OS drops when the process ends however it ends, so a killed run never leaves it stale."""

from pathlib import Path

from vaelab.errors import ConfigError, DataError

LOCK = ".vaelab.lock"


class RunDirLock:
    """Holds `run_dir` for this process until `release` (or the process ends)."""

    def __init__(self, run_dir: Path):
        from filelock import FileLock, Timeout

        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(run_dir / LOCK, timeout=0)
            self._lock.acquire()
        except Timeout:
            raise ConfigError(
                f"{run_dir} is in use by another vaelab process: wait for it to end, or give "
                f"this run another hydra.run.dir"
            ) from None
        except OSError as error:
            raise unwritable(run_dir, error, "hydra.run.dir") from None

    def release(self) -> None:
        self._lock.release()


def unwritable(folder: Path, error: OSError, key: str) -> DataError:
    """The one line for a run's or a sweep's folder that cannot be made or written in."""
    return DataError(f"cannot write in {folder}: {error.strerror or error}; give a writable {key}")
