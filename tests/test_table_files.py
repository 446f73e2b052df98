"""CSV/TSV tables: pyarrow's fast reader and Python's csv module give the same table, and the
same one-line error naming the file and the line, on every kind of file."""

import numpy as np
import pytest

from tests.conftest import run_here
from tests.test_extras import hide
from vaelab.data.table_files import read_table
from vaelab.errors import DataError

FILES = {
    "plain.csv": "a,b,label\n1,2.5,x\n3,4,y\n",
    "quoted.csv": 'a,"b, with comma",label\n1,"2",x\n"3",4,"y"\n',
    "missing.csv": "a,b,label\n1,NA,x\n,4,y\n5,nan,z\n6,?,w\n",
    "infinite.csv": "a,b,label\n1,inf,x\n2,-inf,y\n",
    "spaces.csv": "a,b,label\n 1 ,2,x\n3, 4 ,y\n",
    "int_then_float.csv": "a,b,label\n" + "1,2,x\n" * 3 + "1.5,2,y\n",
    "tabs.tsv": "a\tb\tlabel\n1\t2\tx\n3\t4\ty\n",
    "blank_lines.csv": "a,b,label\n1,2,x\n\n3,4,y\n",
    "ragged.csv": "a,b,label\n1,2,x\n3,4\n",
    "text.csv": "a,b,label\n1,2,x\n3,four,y\n",
    "header_twice.csv": "a,a,label\n1,2,x\n",
    "only_header.csv": "a,b,label\n",
}


def outcome(path):
    try:
        table = read_table(str(path), label_column="label")
    except DataError as error:
        return str(error)
    return table.x, table.features, table.labels.astype(str).tolist()


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_fast_and_the_slow_reader_agree(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_text(FILES[name])
    fast = outcome(path)
    hide(monkeypatch, "pyarrow")
    slow = outcome(path)
    if isinstance(slow, str):
        assert fast == slow and str(path) in slow
    else:
        np.testing.assert_array_equal(fast[0], slow[0])  # NaN where missing, in both
        assert fast[0].dtype == np.float32 and fast[1:] == slow[1:]


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,label\n1,2,x\n3,4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"{path}, line 3: not a readable CSV/TSV line"):
        read_table(str(path), label_column="label")


def test_the_load_timing_script_writes_a_count_table_and_times_both_readers(tmp_path, capfd):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "table_load.py"
    path = tmp_path / "counts.csv"
    result = run_here([str(script), str(path), "--rows", "300", "--cols", "40"], tmp_path, capfd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pyarrow: 300 x 40" in result.stdout and "csv module:" in result.stdout
    x = read_table(str(path)).x
    assert x.shape == (300, 40) and (x == np.round(x)).all() and 0.01 < (x > 0).mean() < 0.1
