"""A data matrix from a file: CSV or TSV, .npy or .npz, Parquet, or AnnData .h5ad.

Every format becomes one `Table`: float32 features with NaN where a value is missing, the feature
names, and the raw label and id columns where asked for. What is wrong with a file is a DataError
that names the file (and the column, and the row, where there is one).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.errors import ConfigError, DataError
from vaelab.extras import require

SUFFIXES = (".csv", ".tsv", ".txt", ".npy", ".npz", ".parquet", ".h5ad")
# Cells of a text table that mean "no value".
MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}


@dataclass
class Table:
    x: np.ndarray  # (N, D) float32, NaN where a value is missing; scipy CSR for a sparse .h5ad
    features: list[str]
    labels: np.ndarray | None  # (N,) as in the file: numbers or strings
    ids: np.ndarray | None  # (N,) strings


def _to_float(path: Path, name: str, values) -> np.ndarray:
    """A column as float32; text cells in MISSING become NaN, any other text is refused."""
    if hasattr(values, "chunks"):  # a number column of pyarrow's: chunk by chunk, no concat
        out, start = np.empty(len(values), np.float32), 0
        for chunk in values.chunks:
            out[start : start + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
            start += len(chunk)
        return out
    if values.dtype.kind in "biuf":
        return values.astype(np.float32)
    text = np.char.strip(values.astype(str))
    text = np.where(np.isin(np.char.lower(text), list(MISSING)), "nan", text)
    try:
        return text.astype(np.float32)
    except ValueError:
        for row, cell in enumerate(text.tolist()):
            try:
                float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: column {name!r} is not numeric (row {row + 1}: {cell!r}); "
                    f"list the numeric columns in data.feature_columns, or name this one in "
                    f"data.label_column or data.id_column"
                ) from None
        raise


def _column(path: Path, columns: dict[str, np.ndarray], key: str, name: str | None):
    """The column that data.<key> names, or None when it names none."""
    if name is None:
        return None
    if name not in columns:
        raise DataError(
            f"{path} has no column {name!r} (data.{key}); its columns: {name_list(list(columns))}"
        )
    values = columns[name]
    return values.to_numpy() if hasattr(values, "chunks") else values


def name_list(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(map(str, names[:limit])) + more


def _select(path: Path, columns: dict[str, np.ndarray], feature_columns, label_column, id_column):
    """Features, labels and ids from named columns (CSV, Parquet, an .npz's arrays)."""
    labels = _column(path, columns, "label_column", label_column)
    ids = _column(path, columns, "id_column", id_column)
    if feature_columns is None:
        feature_columns = [n for n in columns if n not in (label_column, id_column)]
    absent = [n for n in feature_columns if n not in columns]
    if absent:
        raise DataError(f"{path} lacks the feature columns {name_list(absent)}")
    if not feature_columns:
        raise DataError(f"{path} has no feature columns")
    x = np.empty((len(columns[feature_columns[0]]), len(feature_columns)), np.float32)
    for j, name in enumerate(feature_columns):
        x[:, j] = _to_float(path, name, columns[name])
    ids = None if ids is None else ids.astype(str)
    return Table(x, [str(n) for n in feature_columns], labels, ids)


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix in (".tsv", ".txt") else ","


def _read_text(path: Path) -> dict[str, np.ndarray]:
    """Typed columns through pyarrow's multi-threaded CSV reader (the parquet extra), else
    Python's csv module. A file pyarrow refuses (a ragged line, bytes that are not UTF-8, a
    column whose type changes after its first block) is read again by the csv module, whose
    messages name the line."""
    try:
        import pyarrow.csv as pv
    except ImportError:
        return _read_text_slowly(path)
    delimiter = _delimiter(path)
    missing = sorted({form for m in MISSING for form in (m, m.upper(), m.title())})
    try:
        table = pv.read_csv(
            path,
            # Blocks of 16 MiB, not 1: a wide table then has a few chunks per column to copy out.
            read_options=pv.ReadOptions(block_size=1 << 24),
            parse_options=pv.ParseOptions(delimiter=delimiter),
            convert_options=pv.ConvertOptions(null_values=missing, strings_can_be_null=True),
        )
        columns = [_arrow_column(column) for column in table.columns]
    except Exception:  # pyarrow.ArrowInvalid and kin: the slow reader says where and why, or
        # reads what pyarrow's type guess from the first block refused (2.5 in an int column)
        return _read_text_slowly(path)
    if table.num_rows == 0:
        raise DataError(f"{path} is empty: expected a header line and one row per example")
    if len(set(table.column_names)) != len(table.column_names):
        raise DataError(f"{path}: the header names a column twice")
    return dict(zip(table.column_names, columns, strict=True))


def _arrow_column(column):
    """Numbers stay pyarrow's column (`_to_float` copies them out; nulls become NaN); anything
    else becomes text (nulls as ''), which `_to_float` then checks cell by cell."""
    import pyarrow as pa

    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column
    return np.asarray(column.cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False), str)


def _read_text_slowly(path: Path) -> dict[str, np.ndarray]:
    delimiter = _delimiter(path)
    # A cell may be long (a free-text column that is not modelled): Python's default limit of
    # 128 KiB per field would refuse a valid file.
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="") as file:
        reader = csv.reader(file, delimiter=delimiter)
        try:
            rows = list(reader)
        except (csv.Error, UnicodeDecodeError) as error:
            line = reader.line_num + 1
            if isinstance(error, UnicodeDecodeError):  # decoded ahead of the reader's count
                line, error = _undecodable_line(path)
            raise DataError(f"{path}, line {line}: not a readable CSV/TSV line ({error})") from None
    rows = [row for row in rows if row]
    if len(rows) < 2:
        raise DataError(f"{path} is empty: expected a header line and one row per example")
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, 2):
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {number}: {len(row)} fields where the header has {len(header)}"
            )
    if len(set(header)) != len(header):
        raise DataError(f"{path}: the header names a column twice")
    cells = np.asarray(body, dtype=str)
    return {name: cells[:, j] for j, name in enumerate(header)}


def _undecodable_line(path: Path) -> tuple[int, str]:
    """The first line that is not UTF-8, and why."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            try:
                line.decode()
            except UnicodeDecodeError as error:
                return number, f"not UTF-8: byte {line[error.start]:#04x} at column {error.start}"
    return 1, "not UTF-8"


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    pq = require("pyarrow.parquet", "parquet", "a Parquet table")
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow's errors have no common base of their own
        raise DataError(f"cannot read {path} as Parquet: {error}") from None
    if table.num_rows == 0:
        raise DataError(f"{path} is empty: no rows")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _read_h5ad(path: Path, feature_columns, label_column, id_column, layer=None) -> Table:
    """X (or the layer data.layer names) as the matrix; the ids are obs_names unless
    data.id_column names an obs column (a CSV's id column, `cell` in experiment=counts, is
    not one: the ids stay obs_names)."""
    anndata = require("anndata", "anndata", "an .h5ad table")
    try:
        adata = anndata.read_h5ad(path)
    except Exception as error:  # h5py and anndata raise many kinds
        raise DataError(f"cannot read {path} as AnnData: {error}") from None
    if adata.n_obs == 0:
        raise DataError(f"{path} is empty: no observations")
    features = list(map(str, adata.var_names))
    if feature_columns is not None:
        absent = [n for n in feature_columns if n not in set(features)]
        if absent:
            raise DataError(f"{path} lacks the features (var_names) {name_list(absent)}")
        adata = adata[:, list(feature_columns)]
        features = list(feature_columns)
    if layer is not None and layer not in adata.layers:
        layers = name_list(list(adata.layers)) or "none"
        raise DataError(f"{path} has no layer {layer!r} (data.layer); its layers: {layers}")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise DataError(f"{path} has no X matrix: name one of its layers in data.layer")
    # A sparse X stays sparse (CSR): the datamodule makes batches dense, one at a time.
    x = matrix.tocsr() if hasattr(matrix, "tocsr") else np.asarray(matrix)
    obs = {str(name): adata.obs[name].to_numpy() for name in adata.obs.columns}
    labels = _column(path, obs, "label_column", label_column)
    ids = _column(path, obs, "id_column", id_column if id_column in obs else None)
    ids = np.asarray(adata.obs_names if ids is None else ids).astype(str)
    return Table(x.astype(np.float32), features, labels, ids)  # CSR's astype stays CSR


def _read_numpy(path: Path, feature_columns, label_column, id_column) -> Table:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"x": loaded}
        else:
            with loaded:
                arrays = dict(loaded)  # the members are read (and a truncated zip found) here
    except Exception as error:  # OSError, ValueError, EOFError, zipfile's and zlib's errors
        raise DataError(
            f"cannot read {path}: {str(error) or type(error).__name__} (truncated or not a "
            f"NumPy file?)"
        ) from None
    if path.suffix == ".npy" and (label_column is not None or id_column is not None):
        raise ConfigError(
            f"{path} is one array with no label or id columns: save an .npz with the "
            f"arrays x, and labels and ids under the names data.label_column and "
            f"data.id_column give"
        )
    key = "x" if "x" in arrays else "X"
    if key not in arrays:
        raise DataError(f"{path} has no array named x (its arrays: {', '.join(arrays)})")
    x = arrays[key]
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x must be a 2-D numeric array (N, D), got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise DataError(f"{path} is empty: no rows")
    names = [f"x{j}" for j in range(x.shape[1])]
    columns = {name: x[:, j] for j, name in enumerate(names)}
    for name in (label_column, id_column):
        if name in arrays:
            if len(arrays[name]) != len(x):
                raise DataError(f"{path}: {name!r} has {len(arrays[name])} rows, x has {len(x)}")
            columns[name] = arrays[name]
    return _select(path, columns, feature_columns or names, label_column, id_column)


def read_table(
    path: str, feature_columns=None, label_column=None, id_column=None, layer=None
) -> Table:
    """The table in `path`, by its suffix; `layer`: an AnnData layer in place of X."""
    file = Path(path).expanduser()
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"data.path={path}: use a file ending in {', '.join(SUFFIXES)}")
    if layer is not None and file.suffix != ".h5ad":
        raise ConfigError(
            f"data.layer={layer} picks a layer of an AnnData .h5ad, and data.path={path} is "
            f"not one: set data.layer=null"
        )
    if not file.is_file():
        raise DataError(f"data.path={path}: no such file")
    if feature_columns is not None:
        feature_columns = list(feature_columns)
    if file.suffix in (".npy", ".npz"):
        return _read_numpy(file, feature_columns, label_column, id_column)
    if file.suffix == ".h5ad":
        return _read_h5ad(file, feature_columns, label_column, id_column, layer)
    columns = _read_parquet(file) if file.suffix == ".parquet" else _read_text(file)
    return _select(file, columns, feature_columns, label_column, id_column)
