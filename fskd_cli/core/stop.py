"""A scheduler's request to stop: SIGTERM and SIGUSR1 end a training run cleanly, at a step boundary.

Schedulers stop jobs with SIGTERM (Kubernetes, SLURM at preemption or ``scancel``), then SIGKILL after a grace
period; SLURM can also warn a job ahead of its time limit (``#SBATCH --signal=USR1@90``). Left to Python's
default, either ends the process at once. While :class:`StopRequest` is active the handler only records
the signal; the training loop looks at it after every step, writes a checkpoint, and raises :class:`Stopped`,
which the CLI reports as one line with the resume command and exit code :data:`EXIT_STOPPED`.

The first request decides how the run ends: Ctrl-C (SIGINT) after a SIGTERM or SIGUSR1 is ignored, so the
stop still writes its checkpoint and exits with :data:`EXIT_STOPPED` (a wrapper requeues it), and a SIGTERM or
SIGUSR1 after Ctrl-C is ignored, so the run still ends as interrupted (exit 130). Ctrl-C alone raises
``KeyboardInterrupt`` at once, as Python's default does; a SIGINT the process was started ignoring (a
background job of a script) stays ignored. "First" is the order Python runs the handlers in: two signals that
both arrive while the main thread is inside one call into C (a long convolution) are handled in signal-number
order, Ctrl-C first.

Repeated signals are recorded once (SLURM may signal the job and its batch shell, which passes it on); SIGKILL
still ends the run at once, and the last checkpoint is whole (checkpoints are written atomically). Data
loader workers ignore both signals (:func:`ignore_in_worker`): SLURM and ``kill -- -PGID`` signal every
process of the job, and a worker that died would end the run with an error instead of a checkpoint; the
main process ends its workers when it stops, and torch's workers exit when their parent dies.
"""

from __future__ import annotations

import atexit
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

#: exit code of a run stopped by SIGTERM or SIGUSR1 after writing its checkpoint: 75 is EX_TEMPFAIL of
#: sysexits.h ("temporary failure; the user is invited to retry"), so a wrapper can requeue the job and
#: resume it, where 0 is a finished run, 2 a user's mistake, 1 a bug, 130 Ctrl-C and 128+N a process killed
#: by signal N before it could write a checkpoint
EXIT_STOPPED = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def ignore_in_worker(_worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker ignores SIGTERM and SIGUSR1 (the main process answers them)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _ignore(signals: tuple[signal.Signals, ...]) -> None:
    """At exit, before Python's shutdown puts back the default handlers (which end the process at once)."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


class Stopped(Exception):  # noqa: N818  (not an error: a run that stopped when asked)
    """A run that stopped on a signal at a step boundary, its checkpoint written."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; last checkpoint: {checkpoint} "
                         "(continue with the same command and --resume)")


class StopRequest:
    """While active (``with StopRequest() as stop``), SIGTERM and SIGUSR1 set ``stop.signum`` instead of ending
    the process; the previous handlers come back on exit. Outside the main thread it does nothing (Python
    delivers signals to the main thread only)."""

    def __init__(self) -> None:
        self.signum = 0  # 0: no request
        self.interrupted = False  # Ctrl-C came first: later stop requests are ignored
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._record) for sig in STOP_SIGNALS}
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # SIG_IGN (a background job) stays
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None and issubclass(kind, Stopped | KeyboardInterrupt):
            # stopping: further signals (torchrun tearing the job down, a second request) must not cut the one
            # line or the exit code short, nor kill the interpreter's shutdown once Python drops its handlers
            atexit.register(_ignore, tuple(self._previous))
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        if not self.interrupted:
            self.signum = self.signum or signum

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        """Ctrl-C: ``KeyboardInterrupt`` now, unless a stop was asked for first (its checkpoint and exit code win)."""
        if self.signum:
            return
        self.interrupted = True
        raise KeyboardInterrupt
