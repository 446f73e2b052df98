"""Read an offline W&B run back from its `run-<id>.wandb` file.

wandb ships no reader for it, and writes no other file with the history of an offline run. The
file is a LevelDB log (LevelDB's documented record format; the same in wandb 0.19.1 and 0.31):
a 7-byte header (":W&B", 0xBEE1, a version byte), then 32 KiB blocks of
chunks, each chunk a 7-byte header (crc32, uint16 length, uint8 type: 1 full, 2 first, 3 middle,
4 last) and its bytes; a block's tail too short for a chunk header is zero padding. Each whole
record is a `wandb_internal_pb2.Record`, parsed with the protobuf classes of the installed wandb.
CI reads it with the oldest wandb vaelab supports (.ci/floors.txt) and the newest.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B run log"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # padding at the end of a block
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:  # zero padding
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def run_contents(run_dir: Path) -> dict:
    """id, name, config (nested) and history rows of the one offline run under run_dir/wandb."""
    (log_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    config, history, run_id, name = {}, [], None, None
    for record in read_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, name = record.run.run_id, record.run.display_name
            for item in record.run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                value = json.loads(item.value_json)
                head, *rest = [item.key] if item.key else item.nested_key
                if rest:  # media: ("images/samples", "filenames") -> row["images/samples"][...]
                    row.setdefault(head, {})["/".join(rest)] = value
                else:
                    row[head] = value
            history.append(row)
    return {"id": run_id, "name": name, "config": config, "history": history,
            "dir": log_file.parent}  # fmt: skip
