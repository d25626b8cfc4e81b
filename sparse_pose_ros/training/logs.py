"""Training logs: CSV files always, TensorBoard only when the package is installed.

CSV is the format every tool reads (pandas, a spreadsheet, ``column -t``) and needs no
dependency; TensorBoard is a convenience for users who already have it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)


class CsvLog:
    """Append rows of scalars to a CSV file; the header is fixed by the first row written.

    Appending (not truncating) lets a resumed run continue the same file. Keys that were not in
    the first row are dropped with a warning, so the columns stay aligned.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._columns: list[str] | None = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), None)
            self._columns = list(header) if header else None
        self._warned: set[str] = set()

    def write(self, row: dict[str, Any]) -> None:
        new_file = self._columns is None
        if self._columns is None:
            self._columns = list(row)
        extra = set(row) - set(self._columns) - self._warned
        if extra:
            LOG.warning("%s: dropping columns not in the header: %s", self.path, sorted(extra))
            self._warned |= extra
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, "")) for k in self._columns})


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class ScalarLogger:
    """Fan-out of scalar rows to a CSV file and, if available, a TensorBoard writer."""

    def __init__(self, run_dir: str | Path, name: str, tensorboard: bool = True) -> None:
        self.csv = CsvLog(Path(run_dir) / f"{name}.csv")
        self.name = name
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                LOG.debug("tensorboard not installed; logging to CSV only")
            else:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, step: int, row: dict[str, Any]) -> None:
        self.csv.write({"step": step, **row})
        if self._tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{self.name}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
