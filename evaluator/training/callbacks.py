"""The parts of a training step that are not the optimisation itself, as callbacks.

:func:`evaluator.training.loop.train` runs a list of them around every step, in order:
the spectral monitor (hooks before the step, its record after), the loss log, the progress
bar, the caller's ``on_step`` (which may raise :class:`Cancelled`), the checkpointer and
the EMA snapshots. What they write goes through the run store (a null store when nothing
is stored), so none of them asks whether there is a run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from evaluator.training.state import TrainState


class Callback:
    """Hooks around one optimisation step; every method may be left as it is."""

    def before_step(self, state: "TrainState", step: int) -> None:
        """Before the forward pass of ``step`` (``state.step`` is ``step - 1``)."""

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        """After the step; ``rec`` is its loss-log record (callbacks may add to it)."""

    def close(self) -> None:
        """Once, when training stops for any reason."""


class Monitor(Callback):
    """:class:`evaluator.training.monitor.SpectralMonitor`: activations and gradient norms
    of the spectral nodes, added to the record as ``spectral`` one step in N."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor

    def before_step(self, state: "TrainState", step: int) -> None:
        self.monitor.begin(step)

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        spectral = self.monitor.collect()
        if spectral:
            rec["spectral"] = spectral

    def close(self) -> None:
        self.monitor.remove()


class LossLog(Callback):
    """One record per step to the store's loss log."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        self.store.write_record(rec)


class Progress(Callback):
    """A tqdm bar over the run's steps, the loss shown every 10 steps."""

    def __init__(self, total: int, initial: int, name: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=name,
                        unit="step", leave=False)

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        self.bar.update(1)
        if state.step % 10 == 0:
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}")

    def close(self) -> None:
        self.bar.close()


class OnStep(Callback):
    """The caller's ``on_step(step, loss)`` (tests, GUIs); raising
    :class:`evaluator.training.loop.Cancelled` there stops the run resumably."""

    def __init__(self, fn: Callable[[int, float], None]) -> None:
        self.fn = fn

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        self.fn(state.step, rec["loss"])


class Checkpointer(Callback):
    """A checkpoint every ``every`` steps and at the last."""

    def __init__(self, store: Any, every: int, last: int) -> None:
        self.store, self.every, self.last = store, every, last

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        if state.step % self.every == 0 or state.step == self.last:
            self.store.checkpoint(state)


class Snapshots(Callback):
    """EMA snapshots for the convergence curve every ``every`` steps and at the last."""

    def __init__(self, store: Any, every: int, last: int) -> None:
        self.store, self.every, self.last = store, every, last

    def after_step(self, state: "TrainState", rec: dict[str, Any]) -> None:
        if state.step % self.every == 0 or state.step == self.last:
            self.store.snapshot(state)
