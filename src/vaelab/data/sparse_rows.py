"""A sparse matrix of examples (CSR: cells x genes, mostly zeros) that batches like a tensor:
`rows[index]` keeps the picked rows sparse, `to_dense()` makes a batch dense on the device the
rows are on. torch's own CSR tensors cannot select rows (no index_select), hence this class.

A standardisation, which would make the whole matrix dense, is kept as `shift` and `scale` and
applied to each batch as it is made dense.
"""

import torch
from torch import Tensor


class SparseRows:
    def __init__(
        self,
        crow: Tensor,
        col: Tensor,
        values: Tensor,
        width: int,
        shift: Tensor | None = None,
        scale: Tensor | None = None,
    ):
        self.crow, self.col, self.values, self.width = crow, col, values, width
        self.shift, self.scale = shift, scale

    @classmethod
    def from_scipy(cls, matrix) -> "SparseRows":
        matrix = matrix.tocsr()
        return cls(
            torch.from_numpy(matrix.indptr.astype("int64")),
            torch.from_numpy(matrix.indices.astype("int32")),  # 8 bytes an entry with its value
            torch.from_numpy(matrix.data.astype("float32")),
            matrix.shape[1],
        )

    def __len__(self) -> int:
        return len(self.crow) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.width)

    @property
    def device(self) -> torch.device:
        return self.values.device

    dtype = torch.float32

    @property
    def nbytes(self) -> int:
        return self.crow.nbytes + self.col.nbytes + self.values.nbytes

    def _like(self, crow: Tensor, col: Tensor, values: Tensor) -> "SparseRows":
        return SparseRows(crow, col, values, self.width, self.shift, self.scale)

    def to(self, device) -> "SparseRows":
        moved = [t.to(device) for t in (self.crow, self.col, self.values)]
        out = self._like(*moved)
        if self.shift is not None:
            out.shift, out.scale = self.shift.to(device), self.scale.to(device)
        return out

    def __getitem__(self, index) -> "SparseRows":
        """The rows at `index` (a tensor of positions, or a slice), still sparse."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, device=self.crow.device)
        starts = self.crow[index]
        counts = self.crow[index + 1] - starts
        crow = torch.zeros(len(index) + 1, dtype=torch.int64, device=self.crow.device)
        crow[1:] = counts.cumsum(0)
        total = int(crow[-1])
        # Entry k of the new rows is entry k - crow[row] + starts[row] of the old ones.
        offset = torch.repeat_interleave(starts - crow[:-1], counts, output_size=total)
        positions = torch.arange(total, device=self.crow.device) + offset
        return self._like(crow, self.col[positions], self.values[positions])

    def row_of(self, position: int) -> int:
        """The row of the stored entry at `position`."""
        return int(torch.searchsorted(self.crow, torch.tensor(position), right=True)) - 1

    def to_dense(self, raw: bool = False) -> Tensor:
        """(rows, width) float32 on the rows' device, standardised unless `raw`."""
        rows = torch.repeat_interleave(
            torch.arange(len(self), device=self.device), self.crow.diff(), output_size=len(self.col)
        )
        dense = torch.zeros(len(self), self.width, dtype=torch.float32, device=self.device)
        dense[rows, self.col.long()] = self.values
        if self.shift is not None and not raw:
            dense = (dense - self.shift) / self.scale
        return dense

    def row_sums(self) -> Tensor:
        """Each row's total (a count matrix's library sizes), as stored."""
        rows = torch.repeat_interleave(torch.arange(len(self)), self.crow.diff())
        return torch.zeros(len(self)).index_add_(0, rows, self.values.float().cpu())

    def column_moments(self) -> tuple[Tensor, Tensor]:
        """Per column: the mean and the (unbiased) standard deviation, zeros included."""
        n = len(self)
        sums = torch.zeros(self.width, dtype=torch.float64)
        squares = torch.zeros(self.width, dtype=torch.float64)
        values = self.values.double().cpu()
        columns = self.col.long().cpu()
        sums.index_add_(0, columns, values)
        squares.index_add_(0, columns, values**2)
        mean = sums / n
        variance = (squares - n * mean**2) / max(n - 1, 1)
        return mean.float(), variance.clamp(min=0).sqrt().float()

    def min(self) -> Tensor:
        implicit_zero = len(self.values) < len(self) * self.width
        low = self.values.min() if len(self.values) else torch.tensor(0.0)
        return torch.minimum(low, torch.tensor(0.0)) if implicit_zero else low

    def max(self) -> Tensor:
        implicit_zero = len(self.values) < len(self) * self.width
        high = self.values.max() if len(self.values) else torch.tensor(0.0)
        return torch.maximum(high, torch.tensor(0.0)) if implicit_zero else high
