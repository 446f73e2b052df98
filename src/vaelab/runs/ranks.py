"""Which process of a run this is, read from what the launchers set, before Lightning knows:
Lightning's DDP launcher, torchrun, SLURM, and Lightning's multi-node variables."""

import os

# Set by Lightning's DDP launcher, torchrun, SLURM and Lightning's multi-node variables (a
# node's rank) for every process of a run: only rank 0 owns the directory, the others join the
# run it started.
_RANK_VARIABLES = (
    "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"
)  # fmt: skip


def rank_zero() -> bool:
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


def rank_name() -> str:
    """This process's place among the processes of a run, for the names of its own files:
    node1 (NODE_RANK=1), rank3 (RANK=3), node1_local2."""
    short = {"RANK": "rank", "LOCAL_RANK": "local", "NODE_RANK": "node", "GROUP_RANK": "node",
             "SLURM_PROCID": "task", "JSM_NAMESPACE_RANK": "task"}  # fmt: skip
    parts = dict.fromkeys(
        f"{short[n]}{os.environ[n]}" for n in _RANK_VARIABLES if os.environ.get(n, "0") != "0"
    )
    return "_".join(parts)
