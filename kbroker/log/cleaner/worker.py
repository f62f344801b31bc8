"""The process a log cleaner pass's heavy job runs in: ``python -m kbroker.log.cleaner``.

The broker starts one per pass (:class:`WorkerProcess`) and sends it its import path
and one pickled ``(function, argument)`` on stdin; the worker runs it and writes the pickled outcome to
stdout. A fresh interpreter, not a ``multiprocessing`` child: a spawned or forkserver child
imports the parent's ``__main__`` again, which would run the top level of a program that
embeds the broker a second time, and a forkserver outlives a broker killed with SIGKILL
(and its workers with it). The worker asks the kernel to kill it when the broker dies
(``PR_SET_PDEATHSIG``, Linux), so no orphan goes on writing ``.cleaned`` files beside the
next broker's own passes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The directory holding the ``kbroker`` package, put first on the worker's import path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class WorkerDied(RuntimeError):
    """The worker process ended without an outcome (killed, out of memory, crashed)."""


#: The environment variable naming the broker process a worker belongs to.
PARENT_ENV = "KBROKER_CLEANER_PARENT"


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent thread ends (Linux only); exit now
    if the broker that started it (``KBROKER_CLEANER_PARENT``) is gone already: it may die
    while this interpreter starts, before the signal is armed, and the parent this process
    sees then is its new one."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        parent = int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        parent = os.getppid()
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the worker still ends when its pipes close
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


class WorkerProcess:
    """One job in its own worker process: started at once, polled with :meth:`poll`."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env[PARENT_ENV] = str(os.getpid())
        # The broker's import path first (the function may live wherever the broker found it).
        payload = (pickle.dumps([p for p in sys.path if p], protocol=pickle.HIGHEST_PROTOCOL)
                   + pickle.dumps((fn, arg), protocol=pickle.HIGHEST_PROTOCOL))
        # stderr is the broker's: a worker's own failure report lands in the broker's log.
        self._proc = subprocess.Popen([sys.executable, "-m", "kbroker.log.cleaner"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._out: bytes | None = None
        #: Sent by the first :meth:`poll` (``communicate`` goes on sending it across timeouts).
        self._payload: bytes | None = payload

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once the worker has ended."""
        if self._out is not None:
            return True
        payload, self._payload = self._payload, None
        try:
            out, _ = self._proc.communicate(input=payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self._out = out or b""
        return True

    def result(self) -> Any:
        """The job's return value (after :meth:`poll` returned True); its exception is raised
        here; :class:`WorkerDied` when the worker ended without an outcome."""
        assert self._out is not None
        code = self._proc.returncode
        try:
            ok, value = pickle.loads(self._out)
        except Exception:
            raise WorkerDied(f"cleaner worker {self._proc.pid} ended with status {code} and no outcome") from None
        if ok:
            return value
        raise value

    def kill(self) -> None:
        """End the worker now (an aborted pass) and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
            self._proc.communicate(timeout=5)


def main() -> int:
    """Run the one job on stdin; its outcome goes to stdout."""
    die_with_parent()
    path = pickle.load(sys.stdin.buffer)
    sys.path[:0] = [p for p in path if p not in sys.path]
    fn, arg = pickle.load(sys.stdin.buffer)
    try:
        outcome: tuple[bool, Any] = (True, fn(arg))
    except BaseException as e:  # the broker decides what a failed pass means
        outcome = (False, e)
    try:
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        if not outcome[0]:
            # An exception whose __init__ takes more than its message (BatchError) pickles but
            # does not unpickle: the broker would see no outcome at all.
            pickle.loads(data)
    except Exception as e:  # an unpicklable exception: its text still reaches the broker
        data = pickle.dumps((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({e})")))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0

