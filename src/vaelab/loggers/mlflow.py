"""Lightning's MLFlowLogger with vaelab's run-directory contract.

- A local SQLite store by default (logs/mlflow.db), its artifacts beside it (logs/mlartifacts);
  `tracking_uri` names a server instead.
- The MLflow run id goes into <run dir>/mlflow_id: a resumed run continues its MLflow run.
- Tags: the config's `tags` (each a tag key), `vaelab.run_dir` (where the run's files are) and,
  in a multirun, `vaelab.sweep` (the jobs of one sweep share it).
- The store is created under a file lock: the jobs of a parallel sweep may start at once.
- A store that stops answering during a run (a tracking server that went away) costs a warning,
  never the run: what cannot be logged is skipped, MLflow is tried again a minute later, and
  metrics.csv and the run directory hold everything. A server's requests give up after ~10 s
  (MLflow's own defaults retry for minutes; the MLFLOW_HTTP_REQUEST_* variables still rule).
"""

import logging
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from filelock import FileLock
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from vaelab import lightning_boundary as internals
from vaelab.errors import ConfigError
from vaelab.extras import require

log = logging.getLogger(__name__)

ID_FILE = "mlflow_id"
PAUSE_S = 60.0  # after a failed call, how long the run logs nothing to the store
# A server's requests: 3 retries 1, 2 and 4 s apart, 20 s each at most, unless the user set these.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}  # fmt: skip
PARAM_LENGTH = 500  # what every MLflow since 1.28 stores


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= _flatten(value, f"{prefix}{key}/")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database of a sqlite:/// URI (SQLAlchemy's: three slashes and a relative path, or
    four and an absolute one); None for any other store."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def _check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """A tracking server that does not answer is one line now, not MLflow's minutes of retries
    at the first call. Only the connection is tried: what the server says is MLflow's to read."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(tracking_uri)
    if url.scheme not in ("http", "https") or not url.hostname:
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        why = error.strerror or str(error) or type(error).__name__
        raise ConfigError(
            f"logger.mlflow.tracking_uri={tracking_uri}: no tracking server answers at "
            f"{url.hostname}:{port} ({why}); start it, or give another tracking_uri"
        ) from None


def _check_writable(artifact_location: str | None) -> None:
    """A local artifact location that cannot be written is refused before the run starts, not
    at its first picture."""
    from urllib.parse import unquote, urlsplit

    if not artifact_location or urlsplit(artifact_location).scheme not in ("", "file"):
        return
    folder = Path(unquote(urlsplit(artifact_location).path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vaelab_probe_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"logger.mlflow.artifact_location={artifact_location}: cannot write in {folder} "
            f"({error.strerror or error}); give a writable folder"
        ) from None


@contextmanager
def _logging_kept():
    """Creating a SQLite store runs MLflow's alembic migrations, whose logging file config (in
    MLflow 2.x) replaces the root handlers and disables every logger that exists: the run's
    own log lines would stop. The configuration is put back as it was, and the migrations'
    INFO lines (one per schema version) are not shown."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    disabled = logging.root.manager.disable
    logging.disable(logging.INFO)
    existing = {
        name: (one.disabled, one.level, one.handlers[:], one.propagate)
        for name, one in logging.Logger.manager.loggerDict.items()
        if isinstance(one, logging.Logger)
    }
    try:
        yield
    finally:
        logging.disable(disabled)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, (disabled, level, handlers, propagate) in existing.items():
            one = logging.getLogger(name)
            one.disabled, one.propagate = disabled, propagate
            one.setLevel(level)
            one.handlers[:] = handlers


class MLFlowLogger(LightningMLFlowLogger):
    def __init__(
        self,
        run_dir: str,
        tracking_uri: str,
        experiment_name: str = "vaelab",
        run_name: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        sweep: str | None = None,
        artifact_location: str | None = None,
        **kwargs: Any,
    ):
        require("mlflow", "mlflow", "logger=mlflow")
        self.run_dir = Path(run_dir)
        self._database = _sqlite_file(tracking_uri)
        if self._database is not None:
            self._database = self._database.absolute()
            self._database.parent.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{self._database}"
            if artifact_location is None:  # MLflow's default is ./mlruns of the current folder
                artifact_location = (self._database.parent / "mlartifacts").as_uri()
        else:
            _check_reachable(tracking_uri)
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        _check_writable(artifact_location)
        self._paused_until, self._failed = float("-inf"), False
        self._store_uri = tracking_uri
        id_file = self.run_dir / ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        labels = {str(tag): "" for tag in tags} | {"vaelab.run_dir": str(self.run_dir.absolute())}
        if sweep:
            labels["vaelab.sweep"] = sweep
        with self._opening_store():  # MLflow may create the store here
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name,
                tracking_uri=tracking_uri,
                tags=labels,
                artifact_location=artifact_location,
                run_id=run_id,
                **kwargs,
            )
        self._resumed = run_id is not None

    @property
    @rank_zero_experiment
    def experiment(self):
        if internals.mlflow_started(self):
            return internals.mlflow_client(self)
        with self._opening_store():
            if self._resumed and not self._run_exists():
                log.warning(
                    f"MLflow: run {internals.mlflow_run_id(self)} of {self.run_dir / ID_FILE} is "
                    f"not in {internals.mlflow_tracking_uri(self)}: this run continues in a new "
                    f"MLflow run (to continue that one, give logger.mlflow.tracking_uri=<the "
                    f"store it is in>)"
                )
                internals.forget_mlflow_run(self)
                self._resumed = False
            client = self._created()
        run_id = internals.mlflow_run_id(self)
        if self._resumed:
            client.update_run(run_id, status="RUNNING")
        else:
            (self.run_dir / ID_FILE).write_text(run_id + "\n")
        return client

    def _created(self):
        """Lightning's client, with the experiment and the run made. Jobs of a sweep that make
        the experiment at once on a server (no lock reaches there): the later finds the first's."""
        from mlflow.exceptions import MlflowException

        try:
            return LightningMLFlowLogger.experiment.fget(self)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return LightningMLFlowLogger.experiment.fget(self)

    @contextmanager
    def _opening_store(self):
        """Jobs of a parallel sweep may create the same SQLite store at once: one at a time.
        A store this MLflow cannot open (written by a newer MLflow, a server that is down) is
        one line that names it."""
        lock = self._database.with_name(self._database.name + ".lock") if self._database else None
        try:
            with FileLock(lock) if lock else nullcontext(), _logging_kept():
                yield
        except Exception as error:  # MLflow, SQLAlchemy, alembic, requests: no common base
            why = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise ConfigError(
                f"logger=mlflow cannot open the store {self._store_uri}: {why}; give another "
                f"logger.mlflow.tracking_uri, or the MLflow release that wrote it"
            ) from None

    def _run_exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = internals.mlflow_client(self).get_run(internals.mlflow_run_id(self))
            return run.info.lifecycle_stage == "active"
        except MlflowException:
            return False

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """The config flattened to `model/net/hidden`-style keys. MLflow never changes a
        logged param: a resumed run whose config differs (a raised max_epochs) records the new
        values as tags `resumed/<key>`."""
        self._reaching("the config", self._log_config, params)

    def _log_config(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        client = self.experiment
        flat = {key: str(value)[:PARAM_LENGTH] for key, value in _flatten(params).items()}
        logged = client.get_run(self.run_id).data.params if self._resumed else {}
        new = [Param(k, v) for k, v in flat.items() if k not in logged]
        changed = [RunTag(f"resumed/{k}", v) for k, v in flat.items() if logged.get(k, v) != v]
        for start in range(0, len(new), 100):  # MLflow takes at most 100 params a call
            client.log_batch(self.run_id, params=new[start : start + 100])
        if changed:
            client.log_batch(self.run_id, tags=changed)

    @rank_zero_only
    def log_picture(self, name: str, path: Path, step: int) -> None:
        """A PNG the run wrote, as an artifact under images/ (its file name carries the epoch)."""
        self._upload(path, "images")

    @rank_zero_only
    def log_file(self, path: Path) -> None:
        """A file of the run directory (config.yaml, results.json) as a top-level artifact."""
        self._upload(path, None)

    def _upload(self, path: Path, folder: str | None) -> None:
        """An artifact that cannot be stored (the location became read-only or full, the server
        went away) is a warning: the run and its own copy of the file go on."""
        self._reaching(path.name, self.experiment.log_artifact, self.run_id, str(path), folder)

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self._reaching("metrics", super().log_metrics, metrics, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self._reaching("the run's end", super().finalize, status)

    def _reaching(self, what: str, call: Any, *args: Any) -> None:
        """`call(*args)` on the store. One that fails is a warning; then nothing is sent for
        PAUSE_S seconds (a store that went away would cost every call its retries), and the
        next call that gets through says so."""
        if time.monotonic() < self._paused_until:
            return
        try:
            call(*args)
        except ConfigError:  # a store this run cannot use at all: said before it starts
            raise
        except Exception as error:  # OSError, MlflowException, requests': no common base
            why = (str(error).strip().splitlines() or [type(error).__name__])[0]
            log.warning(
                f"MLflow: {what} not logged to {self._store_uri} ({why}); the run goes on, "
                f"{self.run_dir} holds everything, and MLflow is tried again in {PAUSE_S:.0f} s"
            )
            self._paused_until, self._failed = time.monotonic() + PAUSE_S, True
            return
        if self._failed:
            log.info(f"MLflow: {self._store_uri} answers again")
            self._failed = False
