"""--compile: torch.compile, with a fallback to plain (eager) execution that covers the
graph training really runs.

torch.compile builds a graph when it is first called with given inputs and modes: the
training graph (train mode, autograd, autocast, the device's memory layout, the real
batch) at the first training step, and its backward pass at that step's backward. So a
compiled run's first step is guarded (`FirstStepFallback`): if it fails anywhere, what
it may have changed is restored and training goes on uncompiled, exactly as an
uncompiled run would have from the start.
"""
import copy
import random
import sys
from typing import Callable, Optional

import numpy as np
import torch

from .distributed import World, agree


def _warn(what: str, e: Optional[Exception] = None) -> None:
    why = ""
    if e is not None:
        why = f" ({type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]})"
    print(f"warning: --compile {what}{why}; training uncompiled", file=sys.stderr)


def compile_model(model: torch.nn.Module) -> Optional[torch.nn.Module]:
    """torch.compile(model) (the SPQ network or its DDP wrapper), or None with a warning
    where torch.compile refuses it. Nothing is compiled before the first call."""
    try:
        return torch.compile(model)
    except Exception as e:
        _warn("is not available here", e)
        return None


def _random_streams():
    return (torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            np.random.get_state(), random.getstate())


def _set_random_streams(state) -> None:
    cpu, cuda, numpy_state, python_state = state
    torch.set_rng_state(cpu)
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


class FirstStepFallback:
    """A training step that runs `compiled(batch)` and, if its first call fails, falls back
    to `eager(batch)` for good.

    Before the first call it saves what a step changes: the model's parameters and
    buffers (BatchNorm statistics), the optimizer's and the loss scaler's state, and the
    random streams (the augmentation draws from them). If that call raises, on any rank,
    every rank restores them, a warning is printed, and the step runs again eagerly.
    Later calls are not guarded: by then every graph of a training step has been built.
    """

    def __init__(self, compiled: Callable, eager: Callable, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scaler: "torch.amp.GradScaler",
                 world: World = World()):
        self.compiled, self.eager, self.step = compiled, eager, None
        self.model, self.optimizer, self.scaler, self.world = model, optimizer, scaler, world

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.step is not None:
            return self.step(batch)
        saved = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()),
                 self.scaler.state_dict(), _random_streams())
        failure = None
        try:
            loss = self.compiled(batch)
        except Exception as e:
            failure = e
        if not agree(self.world, failure is not None):
            self.step = self.compiled
            return loss
        model_state, optimizer_state, scaler_state, streams = saved
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        self.scaler.load_state_dict(scaler_state)
        _set_random_streams(streams)
        if self.world.main:
            _warn("failed at the first training step" + ("" if failure else " of another process"),
                  failure)
        self.step = self.eager
        return self.eager(batch)
