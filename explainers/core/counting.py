"""Counting the rows a model evaluates during one explanation: the `Cost` of every method."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from torch import Tensor, nn

from explainers.core.model_kind import evaluation_points


class RowCounter:
    """Counts rows through watched modules' forward, and rows of gradient through their output."""

    def __init__(self):
        self.forwards = 0
        self.backwards = 0
        self.handles: list = []

    def watch(self, module: nn.Module) -> None:
        self.handles.append(module.register_forward_hook(self._on_forward))

    def _on_forward(self, module: nn.Module, args, output) -> None:
        out = output
        if not isinstance(out, Tensor):
            out = getattr(output, "logits", None)
            if out is None and isinstance(output, (tuple, list)):
                out = next((o for o in output if isinstance(o, Tensor)), None)
        if not isinstance(out, Tensor) or out.ndim == 0:
            return
        self.forwards += out.shape[0]
        if out.requires_grad:
            out.register_hook(self._on_backward)

    def _on_backward(self, grad: Tensor) -> None:
        self.backwards += grad.shape[0]

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


_ACTIVE_COUNTER: contextvars.ContextVar[RowCounter | None] = contextvars.ContextVar(
    "explainers_row_counter", default=None)


@contextlib.contextmanager
def count_rows(model: nn.Module) -> Iterator[RowCounter]:
    """Count the model's evaluated rows (forward and backward) for the duration of one call."""
    counter = RowCounter()
    token = _ACTIVE_COUNTER.set(counter)
    try:
        for point in evaluation_points(model):
            counter.watch(point)
        yield counter
    finally:
        counter.close()
        _ACTIVE_COUNTER.reset(token)


def watch(model: nn.Module) -> None:
    """Count the rows of `model` (e.g. a method's private copy) in the current call's Cost."""
    counter = _ACTIVE_COUNTER.get()
    if counter is not None:
        for point in evaluation_points(model):
            counter.watch(point)
