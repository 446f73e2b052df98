"""Models of one class and shape, trained as one: their parameters stacked along a new first
dimension, `per_example` vmapped over it, each member's `losses` its own (its beta, its
schedule), the loss the sum of the members'.

Adam and the other elementwise optimizers act on each element alone, and member i's slice of
the stacked gradient is the gradient of its own loss: one optimizer over the stack takes the
step each member's own optimizer would take. What is not elementwise (gradient clipping by the
norm, a learning rate per member) is not the same, and is not done here.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from vaelab.errors import ConfigError


class _PerExample(nn.Module):
    """A model's `per_example` as a module's forward, so that `functional_call` can run it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, noise: tuple[Tensor, ...], condition: dict) -> dict:
        return self.model.per_example(x, *noise, **condition)


class Stack:
    """`members`: models built alike but for their seeds and loss weights. Their weights are
    copied into the stack (`params`, `buffers`: name -> (members, *shape)); `unstack` copies
    them back."""

    def __init__(self, members: Sequence[nn.Module]):
        if not members:
            raise ValueError("a stack needs at least one member")
        _check_alike(members)
        self.members = list(members)
        self._template = _PerExample(members[0])
        wrapped = [_PerExample(m) for m in members]
        self.params, self.buffers = stack_module_state(wrapped)

    def parameters(self) -> list[Tensor]:
        """The stacked parameters, for one optimizer over every member."""
        return list(self.params.values())

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        """Each member's noise for its batch x[i], drawn by the member, stacked."""
        drawn = [member.noise(x[i]) for i, member in enumerate(self.members)]
        return tuple(torch.stack(parts) for parts in zip(*drawn, strict=True))

    def per_example(
        self, x: Tensor, noise: tuple[Tensor, ...], y: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Every member's `per_example` on its own batch: x (members, batch, *shape), noise as
        `noise` gives it; each output with the members first."""
        condition = {"y": y} if y is not None and self.members[0].conditional else {}
        return _vmapped(self._template, self.params, self.buffers, x, noise, condition)

    def losses(self, out: dict[str, Tensor]) -> list[dict[str, Tensor | float]]:
        """Each member's own `losses` of its slice of `out`."""
        return [
            member.losses({name: value[i] for name, value in out.items()})
            for i, member in enumerate(self.members)
        ]

    @torch.no_grad()
    def unstack(self) -> None:
        """Each member's weights set to its slice of the stack."""
        stacked = self.params | self.buffers
        for i, member in enumerate(self.members):
            for name, tensor in [*member.named_parameters(), *member.named_buffers()]:
                tensor.copy_(stacked[f"model.{name}"][i])


def stacked_per_example(
    members: Sequence[nn.Module],
    x: Tensor,
    noise: tuple[Tensor, ...],
    condition: dict,
    grad: bool,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The members' `per_example` at their weights now, as one stacked call: x, noise and
    condition with the members first. The stacked parameters (leaves, requiring gradients when
    `grad`; named as `Stack.params`) and the outputs."""
    params = {
        f"model.{name}": torch.stack([m.get_parameter(name).detach() for m in members])
        for name, _ in members[0].named_parameters()
    }
    for tensor in params.values():
        tensor.requires_grad_(grad)
    buffers = {
        f"model.{name}": torch.stack([m.get_buffer(name) for m in members])
        for name, _ in members[0].named_buffers()
    }
    return params, _vmapped(_PerExample(members[0]), params, buffers, x, noise, condition)


def _vmapped(template: nn.Module, params, buffers, x, noise, condition) -> dict[str, Tensor]:
    def one(params, buffers, x, noise, condition):
        return functional_call(template, (params, buffers), (x, noise, condition))

    return vmap(one, randomness="error")(params, buffers, x, noise, condition)


def _check_alike(members: Sequence[nn.Module]) -> None:
    """Members of one class whose parameters and buffers have the same names and shapes."""
    first = members[0]
    shapes = {name: tuple(t.shape) for name, t in first.state_dict().items()}
    for i, member in enumerate(members[1:], start=1):
        if type(member) is not type(first):
            raise ConfigError(
                f"members 0 and {i} are of the classes {type(first).__name__} and "
                f"{type(member).__name__}: only models of one class train stacked"
            )
        theirs = {name: tuple(t.shape) for name, t in member.state_dict().items()}
        if theirs != shapes:
            differ = sorted(set(theirs.items()) ^ set(shapes.items()))[0][0]
            raise ConfigError(
                f"members 0 and {i} differ in the shape of {differ}: only models of one shape "
                f"train stacked (latent_dim, the net and the data must be the same)"
            )
