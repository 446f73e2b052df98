"""Lightning's CSVLogger, made safe to continue: metrics.csv is appended to, never deleted, and a
resume first drops the rows logged after the checkpoint it starts from, so that every step is in
the file once however often the run was killed and resumed.

Lightning's writer removes metrics.csv when its folder is not empty (in vaelab the folder is the
run directory, which already holds Hydra's files) and rewrites the file in place when a new
column appears, which a kill can leave half written.
"""

import csv
import io
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from vaelab.lightning_boundary import CSVWriter, csv_experiment
from vaelab.runs.run_dir import atomic_write


def _read(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the whole rows of a metrics.csv (a row cut short by a kill is left out)."""
    if not os.path.isfile(path):
        return [], []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        rows = [r for r in reader if None not in r.values() and None not in r]
        return list(reader.fieldnames or []), rows


def _csv_text(columns: list[str], rows: list[dict], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class _AppendingWriter(CSVWriter):
    def columns(self) -> list[str]:
        # Start from the existing columns: a new one makes the file be rewritten with it.
        return sorted(_read(self.metrics_file_path)[0])

    def save(self) -> None:
        """New rows are appended in one write; a new column rewrites the file beside it and
        renames it over the old one, so a kill never leaves a file with half its rows."""
        if not self.metrics:
            return
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        self.metrics_keys = sorted({*self.metrics_keys, *new_keys})
        if new_keys or not os.path.isfile(self.metrics_file_path):
            rows = _read(self.metrics_file_path)[1] + self.metrics
            text = _csv_text(self.metrics_keys, rows, header=True)
            atomic_write(Path(self.metrics_file_path), text)
        else:
            with open(self.metrics_file_path, "a", newline="") as file:
                file.write(_csv_text(self.metrics_keys, self.metrics, header=False))
        self.metrics = []

    def rewind(self, step: int) -> None:
        """Drop the rows of steps >= `step`: a resume from a checkpoint of that step logs them
        again."""
        columns, rows = _read(self.metrics_file_path)
        kept = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) < step]
        if columns and len(kept) < len(rows):
            atomic_write(Path(self.metrics_file_path), _csv_text(columns, kept, header=True))


class CSVLogger(LightningCSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> CSVWriter:
        return csv_experiment(self, _AppendingWriter)

    @rank_zero_only
    def rewind(self, step: int) -> None:
        """Forget what was logged at steps >= `step` (a resume from that step logs it again)."""
        self.experiment.rewind(step)
