"""The user's own data matrix (cells x genes, samples x measurements): one row per example.

The transforms (log1p, imputation of missing values, per-feature standardisation) are fitted on
the training split only. They are the datamodule's state, which Lightning saves in every
checkpoint: vaelab-eval and vaelab-embed load it from there and apply the very same transform,
also to a new file (`vaelab-embed ckpt_path=... data.path=new.csv`).
"""

from typing import Any

import numpy as np
import torch

from vaelab.data.in_memory import Arrays, InMemoryDataModule
from vaelab.data.sparse_rows import SparseRows
from vaelab.data.table_files import name_list, read_table
from vaelab.errors import ConfigError, DataError

IMPUTE = ("mean", "median", "zero")


def encode_labels(raw: np.ndarray | None, classes: list | None) -> tuple[torch.Tensor | None, list]:
    """Labels as int64 codes, -1 where missing. Integer labels stay as they are; any other
    values become positions in `classes` (sorted, from the training file when given)."""
    if raw is None:
        return None, classes
    text = np.char.strip(raw.astype(str))
    missing = np.isin(np.char.lower(text), ["", "nan", "na", "none"])
    if classes is None:
        try:
            values = text[~missing].astype(np.float64)
            if np.all(values == np.round(values)):
                codes = np.full(len(text), -1, np.int64)
                codes[~missing] = values.astype(np.int64)
                return torch.from_numpy(codes), None
        except ValueError:
            pass
        classes = sorted(set(text[~missing].tolist()))
    position = {name: code for code, name in enumerate(classes)}
    codes = np.asarray([-1 if m else position.get(t, -1) for t, m in zip(text, missing)])
    return torch.from_numpy(codes.astype(np.int64)), classes


def _columns_where(x, predicate) -> np.ndarray:
    """(D,) whether any value of a column meets `predicate`; of a sparse matrix, its stored
    values (the others are zeros)."""
    if not hasattr(x, "tocsr"):
        return predicate(x).any(0)
    columns = np.zeros(x.shape[1], bool)
    columns[x.indices[predicate(x.data)]] = True
    return columns


class TabularDataModule(InMemoryDataModule):
    """x: (D,) float32, transformed; y: the label column's codes (-1 where there is none)."""

    def __init__(
        self,
        *args,
        path: str | None = None,
        feature_columns: list[str] | None = None,
        label_column: str | None = None,
        id_column: str | None = None,
        layer: str | None = None,
        log1p: bool = False,
        standardize: bool = True,
        impute: str | None = None,
        likelihood: str = "gaussian",
        **kwargs,
    ):
        super().__init__(*args, likelihood=likelihood, **kwargs)
        if path is None:
            raise ConfigError("data=tabular needs data.path=<a .csv, .npy, .parquet, ... file>")
        if impute not in (None, *IMPUTE):
            raise ConfigError(f"data.impute={impute}: use null (refuse), {', '.join(IMPUTE)}")
        self.path, self.feature_columns = path, feature_columns
        self.label_column, self.id_column, self.layer = label_column, id_column, layer
        self.log1p, self.standardize, self.impute = log1p, standardize, impute
        self.fitted: dict[str, Any] | None = None  # the transform, once fitted or loaded
        self._raw: dict[str, Arrays] = {}

    def read(self) -> dict[str, Arrays]:
        # A table from a trained model's checkpoint must have the features it was trained on.
        columns = self.fitted["features"] if self.fitted else self.feature_columns
        table = read_table(self.path, columns, self.label_column, self.id_column, self.layer)
        x = table.x
        sparse = hasattr(x, "tocsr")
        if sparse and self.impute in ("mean", "median") and np.isnan(x.data).any():
            raise ConfigError(
                f"data.impute={self.impute}: {self.path} is sparse, and its missing values are "
                f"filled with zeros, like its unstored entries: set data.impute=zero"
            )
        bad = _columns_where(x, np.isinf)
        if self.impute is None:
            bad |= _columns_where(x, np.isnan)
        if bad.any():
            names = [n for n, b in zip(table.features, bad) if b]
            raise DataError(
                f"{self.path}: missing or infinite values in the columns {name_list(names)}; "
                f"fill or drop them, or set data.impute=mean|median|zero to fill missing ones"
            )
        negative = _columns_where(x, lambda v: v < 0)
        if self.log1p and negative.any():
            names = [n for n, b in zip(table.features, negative) if b]
            raise DataError(
                f"{self.path}: data.log1p=true needs counts >= 0, but the columns "
                f"{name_list(names)} hold negative values; set data.log1p=false"
            )
        labels, classes = encode_labels(table.labels, self.fitted and self.fitted["classes"])
        if labels is None:
            labels = torch.full((x.shape[0],), -1, dtype=torch.int64)
        self._columns = {"features": table.features, "classes": classes}
        if table.ids is not None:
            self.ids["train"] = table.ids
        return {"train": (SparseRows.from_scipy(x) if sparse else torch.from_numpy(x), labels)}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        super().setup(stage)
        self._raw = dict(self.splits)
        if self.fitted is None:
            self.fitted = self._fit(self._raw["train"][0])
        self._transform()

    def _fit(self, x: torch.Tensor | SparseRows) -> dict[str, Any]:
        """The transform's parameters, from the training split."""
        if isinstance(x, SparseRows):  # log1p keeps zeros at zero: only the stored values
            mean, std = self._sparse(x, {"log1p": self.log1p}).column_moments()
            fill = torch.zeros(x.width)
            std = torch.where(std > 0, std, torch.ones_like(std))
            return {**self._columns, "log1p": self.log1p, "standardize": self.standardize,
                    "fill": fill, "mean": mean, "std": std}  # fmt: skip
        if self.log1p:
            x = torch.log1p(x)
        fill = torch.zeros(x.shape[1])
        if self.impute == "mean":
            fill = torch.nanmean(x, 0)
        elif self.impute == "median":
            fill = torch.nanmedian(x, 0).values
        fill = torch.nan_to_num(fill)  # a column missing from the whole split is filled with 0
        x = torch.where(torch.isnan(x), fill, x)
        mean, std = x.mean(0), x.std(0)
        # A constant feature has no spread to divide by; it becomes zeros.
        std = torch.where(std > 0, std, torch.ones_like(std))
        return {
            **self._columns,
            "log1p": self.log1p,
            "standardize": self.standardize,
            "fill": fill,
            "mean": mean,
            "std": std,
        }

    @staticmethod
    def _sparse(x: SparseRows, t: dict[str, Any]) -> SparseRows:
        """The transform of a sparse split: log1p and the fill on the stored values; the
        standardisation on each batch as it is made dense."""
        values = torch.nan_to_num(x.values, nan=0.0)
        out = SparseRows(x.crow, x.col, torch.log1p(values) if t["log1p"] else values, x.width)
        if t.get("standardize"):
            out.shift, out.scale = t["mean"], t["std"]
        return out

    def _transform(self) -> None:
        t = self.fitted
        for split, (x, y) in self._raw.items():
            if isinstance(x, SparseRows):
                self.splits[split] = (self._sparse(x, t), y)
                continue
            if t["log1p"]:
                x = torch.log1p(x)
            x = torch.where(torch.isnan(x), t["fill"], x)
            if t["standardize"]:
                x = (x - t["mean"]) / t["std"]
            self.splits[split] = (x.float(), y)

    def label_names(self) -> list[str] | None:
        """The text labels the codes stand for (code i is name i); None for integer labels."""
        return list(self.fitted["classes"]) if self.fitted and self.fitted["classes"] else None

    def feature_names(self) -> list[str]:
        return list(self.fitted["features"]) if self.fitted else []

    def to_file_units(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of the transform: model-space rows back in the units of the file."""
        t = self.fitted
        if t["standardize"]:
            x = x * t["std"] + t["mean"]
        return torch.expm1(x) if t["log1p"] else x

    # Lightning saves these in every checkpoint and restores them on resume.
    def state_dict(self) -> dict[str, Any]:
        return dict(self.fitted) if self.fitted else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.fitted = dict(state)
        if self._raw:
            self._transform()
