"""Members of a sweep trained in lockstep: each member is its own lone run (vaelab's train, the
same code, files and loggers as alone), in a thread of its own, and the threads take turns. One
runs at a time and sees the process's globals as its lone run would (random streams, Hydra's
config, the log's handlers, the working directory): they are swapped at each turn. Where a
member's model computes its `per_example` (training, validation, test), the member waits until
every member has come to such a call; the calls are then computed together, stacked, and so are
their backward passes (`Seat`). The optimizer, LR schedule, clipping, checkpoints, loggers,
divergence checks and results stay each member's own.

A member whose calls do not line up with the others' (a member resumed at another step, another
batch shape) is computed in a stack of its own at that turn: the members' math never mixes.

`stack`: whether the calls of a turn are computed as one vmapped call over the members' stacked
weights (on a GPU, where a small model's step is kernel launches) or one after another, with one
backward of their losses (on a CPU, where stacked products measured slower than apart: 8 steps
of the default MLP 44 ms stacked, 31 ms apart, on 2 cores). None: by the device.
"""

import logging
import os
import random
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaelab import lightning_boundary
from vaelab.batched.stack import stacked_per_example

_here = threading.local()  # the seat of the member this thread runs, if any
_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")  # what Lightning's seed_everything leaves behind


def seat() -> "Seat | None":
    """The seat of the member whose lone run this thread runs (None outside a lockstep)."""
    return getattr(_here, "seat", None)


@dataclass
class _Globals:
    """What a lone run would have to itself in its process."""

    torch_rng: Tensor
    cuda_rng: list | None
    numpy_rng: tuple
    python_rng: tuple
    hydra: Any
    handlers: list
    level: int
    env: dict
    cwd: str

    @classmethod
    def now(cls) -> "_Globals":
        from hydra.core.hydra_config import HydraConfig

        cuda = torch.cuda.is_initialized()  # not is_available: it opens NVML at each call
        root = logging.getLogger()
        return cls(
            torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None,
            np.random.get_state(), random.getstate(), HydraConfig.instance().cfg,
            list(root.handlers), root.level, {k: os.environ.get(k) for k in _ENV}, os.getcwd(),
        )  # fmt: skip

    def restore(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)
        HydraConfig.instance().cfg = self.hydra
        root = logging.getLogger()
        if root.handlers != self.handlers:
            root.handlers[:] = self.handlers
        if root.level != self.level:  # setLevel empties every logger's cache
            root.setLevel(self.level)
        for name, value in self.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)


@dataclass
class _Call:
    """A member's `per_example` call, or its loss for a backward pass (`graph` set)."""

    model: Any
    args: tuple = ()
    grad: bool = False
    autocast: tuple = ()
    graph: "_Graph | None" = None
    loss: Tensor | None = None

    def key(self) -> tuple:
        """Calls with one key are computed as one stack."""
        if self.graph is not None:
            return ("backward", id(self.graph))
        x, noise, condition = self.args
        shapes = tuple((t.shape, t.dtype, t.device) for t in (x, *noise, *condition.values()))
        return ("forward", type(self.model), _shapes(self.model), self.grad, self.autocast, shapes,
                tuple(condition))  # fmt: skip


@dataclass
class _Graph:
    """A stacked forward pass that needs its backward: the members and their stacked
    parameters. Each member was handed its slice of the outputs, and computed its loss from it:
    one backward of the members' losses summed gives each its own gradient."""

    models: list
    params: dict[str, Tensor] | None  # None: computed apart, the gradients reach the members'
    done: bool = False


class Lockstep:
    """Runs `jobs` (each a member's lone run) in threads that take turns; `run` returns what each
    returned, or the exception it raised."""

    def __init__(self, stack: bool | None = None) -> None:
        self.stack = stack
        self._lock = threading.Lock()
        self._turns: dict[int, threading.Condition] = {}  # one a member: only it is woken
        self._holder = 0
        self._live: set[int] = set()
        self._pending: dict[int, _Call] = {}
        self._results: dict[int, Any] = {}
        self._globals: dict[int, _Globals] = {}
        self._stopping = False  # SIGTERM came: each member stops at its next call

    def run(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        results: list[Any] = [None] * len(jobs)
        start = _Globals.now()
        self._live = set(range(len(jobs)))
        self._globals = {i: start for i in self._live}
        self._turns = {i: threading.Condition(self._lock) for i in self._live}
        threads = [
            threading.Thread(
                target=self._member, args=(i, job, results), name=f"member{i}", daemon=True
            )
            for i, job in enumerate(jobs)
        ]
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._sigterm) if main else None
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        start.restore()
        return results

    def _sigterm(self, signum: int, frame: Any) -> None:
        """SIGTERM, how schedulers pre-empt: the members' trainers are told at their next call
        (Lightning installs its handler only in the main thread), and each stops as its lone run
        would: last.ckpt written, Preempted."""
        self._stopping = True

    def _member(self, i: int, job: Callable[[], Any], results: list[Any]) -> None:
        _here.seat = Seat(self, i)
        with self._lock:
            self._turns[i].wait_for(lambda: self._holder == i)
            self._globals[i].restore()
        try:
            results[i] = job()
        except BaseException as error:  # handed to the launcher, which says what failed
            results[i] = error
        finally:
            with self._lock:
                self._live.discard(i)
                self._pending.pop(i, None)
                if self._live and self._live <= set(self._pending):
                    self._compute()
                self._hand_on(i)

    def meet(self, i: int, call: _Call) -> Any:
        """Member i's call, computed once every member has come to one."""
        if self._stopping and lightning_boundary.trainer_of(call.model) is not None:
            lightning_boundary.tell_of_sigterm(call.model.trainer)
        with self._lock:
            self._pending[i] = call
            if self._live <= set(self._pending):
                self._compute()
            if i not in self._results:
                self._globals[i] = _Globals.now()
                self._hand_on(i)
                self._turns[i].wait_for(lambda: self._holder == i)
                self._globals[i].restore()
            result = self._results.pop(i)
        if isinstance(result, BaseException):
            raise result
        return result

    def _hand_on(self, i: int) -> None:
        """The turn to the next member that can go on: one with a result, or yet to call."""
        order = sorted(self._live)
        after = [j for j in order if j > i] + [j for j in order if j <= i]
        ready = [j for j in after if j not in self._pending or j in self._results]
        self._holder = ready[0] if ready else -1
        if ready:
            self._turns[self._holder].notify()

    def _compute(self) -> None:
        calls, self._pending = self._pending, {}
        by_key: dict[tuple, list[int]] = {}
        for i, call in calls.items():
            by_key.setdefault(call.key(), []).append(i)
        for members in by_key.values():
            try:
                computed = _compute([calls[i] for i in members], self.stack)
            except Exception as error:  # each member raises it in its own run
                computed = [error] * len(members)
            self._results.update(zip(members, computed, strict=True))


def _shapes(model: Any) -> tuple:
    """A model's parameter and buffer shapes: models alike in them stack."""
    shapes = getattr(model, "_stack_shapes", None)
    if shapes is None:
        shapes = tuple((name, tuple(t.shape)) for name, t in model.state_dict().items())
        model._stack_shapes = shapes
    return shapes


def _compute(calls: list[_Call], stack: bool | None) -> list[Any]:
    if calls[0].graph is not None:
        _backward(calls[0].graph, {id(call.model): call.loss for call in calls})
        return [None] * len(calls)
    models = [call.model for call in calls]
    device_type, enabled, dtype = calls[0].autocast
    with torch.set_grad_enabled(calls[0].grad), torch.autocast(device_type, dtype, enabled):
        if stack or (stack is None and device_type != "cpu"):
            xs, noises, conditions = zip(*(call.args for call in calls), strict=True)
            x = torch.stack(xs)
            noise = tuple(torch.stack(parts) for parts in zip(*noises, strict=True))
            condition = {k: torch.stack([c[k] for c in conditions]) for k in conditions[0]}
            params, stacked = stacked_per_example(models, x, noise, condition, calls[0].grad)
            outputs = [{k: v[i] for k, v in stacked.items()} for i in range(len(models))]
        else:
            params = None
            outputs = [c.model.core(c.args[0], *c.args[1], **c.args[2]) for c in calls]
    graph = _Graph(models, params) if calls[0].grad else None
    return [(out, graph) for out in outputs]


def _backward(graph: _Graph, losses: dict[int, Tensor]) -> None:
    """The members' losses (by id of their model) summed and backpropagated at once: through
    their stacked pass, each member's slice of the stacked gradient then added to its own
    parameters'; or through their passes apart, into their parameters. A member of the pass that
    did not come with its loss (gone, or gone elsewhere) gets nothing."""
    if graph.done:
        raise RuntimeError("a stacked forward pass was backpropagated twice")
    graph.done = True
    torch.stack([loss.reshape(()) for loss in losses.values()]).sum().backward()
    for i, model in enumerate(graph.models if graph.params is not None else ()):
        if id(model) not in losses:
            continue
        for name, parameter in model.named_parameters():
            stacked = graph.params[f"model.{name}"].grad
            if stacked is None:
                continue
            if parameter.grad is None:
                parameter.grad = stacked[i]
            else:
                parameter.grad += stacked[i]


class Seat:
    """Member i's place in a lockstep: where its model's `per_example` calls and backward go."""

    def __init__(self, lockstep: Lockstep, i: int):
        self.lockstep, self.i = lockstep, i
        self._graph: _Graph | None = None  # of its last call that needs a backward

    def per_example(self, model: Any, x: Tensor, noise: tuple, condition: dict) -> dict:
        device_type = x.device.type
        autocast = (device_type, torch.is_autocast_enabled(device_type),
                    torch.get_autocast_dtype(device_type))  # fmt: skip
        call = _Call(model, (x, tuple(noise), dict(condition)), torch.is_grad_enabled(), autocast)
        out, graph = self.lockstep.meet(self.i, call)
        if graph is not None:
            self._graph = graph
        return out

    def backward(self, model: Any, loss: Tensor) -> bool:
        """The member's loss, backpropagated with the other members' through their stacked pass
        (the member's parameters get their gradients); False for a loss of no stacked pass."""
        graph, self._graph = self._graph, None
        if graph is None:
            return False
        self.lockstep.meet(self.i, _Call(model, graph=graph, loss=loss))
        return True
