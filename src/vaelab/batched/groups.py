"""Which jobs of a sweep train together: jobs whose overrides differ only in the seed, in what
their model declares per member (`Model.member_arguments`: its loss weights, a fixed sigma) and
in what each member's own optimizer does (its settings, its LR schedule, gradient clipping)
share one stack, at most `max_members` of them; any other difference (the latent size, the net,
the data, the batch size) makes another group. A model that does
not train stacked runs one job at a time, and the sweep says so in one line."""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override


@dataclass
class Group:
    """Jobs (their numbers in the sweep) trained together; `stacked` is False for a job of a
    model that does not train stacked, alone in its group."""

    jobs: list[int]
    stacked: bool = True


def groups(
    jobs: Sequence[tuple[Sequence[str], type]], max_members: int
) -> tuple[list[Group], list[str]]:
    """`jobs`: each job's overrides and its model class, in sweep order. The groups, in the
    order of their first job, and one line per model class that does not train stacked."""
    if max_members < 1:
        raise ValueError(f"max_members={max_members}: must be at least 1")
    parser = OverridesParser.create()
    together: dict[tuple, list[int]] = {}
    alone: dict[type, list[int]] = {}
    for num, (overrides, model) in enumerate(jobs):
        arguments = member_arguments(model)
        if arguments is None:
            alone.setdefault(model, []).append(num)
            together[("alone", num)] = [num]
            continue
        shared = sorted(
            o.input_line
            for o in parser.parse_overrides(list(overrides))
            if not _per_member(o, arguments)
        )
        together.setdefault((model, *shared), []).append(num)
    result = []
    for key, nums in together.items():
        stacked = key[0] != "alone"
        result += [
            Group(nums[i : i + max_members], stacked) for i in range(0, len(nums), max_members)
        ]
    notes = [
        f"{_jobs(nums)}: {model.__name__} does not train stacked (it declares no "
        f"member_arguments); {'they run' if len(nums) > 1 else 'it runs'} one at a time"
        for model, nums in alone.items()
    ]
    return result, notes


def member_arguments(model: type) -> frozenset[str] | None:
    """What a model class declares itself (`Model.member_arguments`): a subclass that does not
    (a user's model over VAE) does not train stacked, since its own per_example may read more."""
    return vars(model).get("member_arguments")


# What each member's lone run has to itself, never read by the stacked call
# (vaelab.batched.lockstep): its own optimizer's step, with its slice of the stacked gradient;
# its callbacks, loggers and tags.
_OWN_STEP = {("model", "optimizer"), ("model", "scheduler"), ("trainer", "gradient_clip_val"),
             ("trainer", "gradient_clip_algorithm")}  # fmt: skip
_OWN_RUN = {"callbacks", "logger", "tags"}


def _per_member(override: Override, arguments: frozenset[str]) -> bool:
    """Whether an override sets what each member may have of its own: the seed, a model
    argument of `arguments` (model.beta, model.kl_schedule.warmup_steps, model/kl_schedule),
    what its own optimizer step reads (model.optimizer.lr, trainer.gradient_clip_val), its
    callbacks, loggers and tags."""
    if override.is_delete():
        return False
    parts = re.split(r"[./]", override.key_or_group)
    if parts == ["seed"] or tuple(parts[:2]) in _OWN_STEP or parts[0] in _OWN_RUN:
        return True
    return len(parts) > 1 and parts[0] == "model" and parts[1] in arguments


def _jobs(nums: list[int]) -> str:
    return f"job {nums[0]}" if len(nums) == 1 else f"jobs {', '.join(map(str, nums))}"
