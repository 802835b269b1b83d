"""A pool of killable worker processes: run a picklable function with a hard per-call timeout.

Why processes and not threads or `signal.alarm`: a verifier can hang inside C code (sympy evaluating
`9^{9^{9^{9}}}` is one big-integer power), which no Python-level timer interrupts, and `signal.alarm` only
works in the main thread while rewards may be scored from worker threads. A separate process can always be
SIGKILLed. Workers are started with the "spawn" context (no forked copy of a trainer's CUDA state or locks,
and no forkserver process left behind after `close`).

A call past `timeout` kills its worker, starts a replacement and raises `Unscorable`, as do a dead worker
and an exception in `fn`. `with WorkerPool(2, 5.0) as pool: pool.map(pow, [(2, 10), (3, 2)])` -> [1024, 9].
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from ponder.rewards.base import Unscorable

_PR_SET_PDEATHSIG, _SIGKILL = 1, 9


def _die_with_parent() -> None:
    # Linux only: a worker stuck in C code never reads its pipe's EOF, so ask the kernel to SIGKILL it when
    # the parent dies (e.g. the trainer itself is SIGKILLed). Elsewhere the pipe EOF is the only signal.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, _SIGKILL)


def _worker_loop(conn: Connection, initializer: Callable[[], None] | None) -> None:
    """Worker main: run `initializer`, say "ready", then answer `(fn, args)` requests until EOF or None."""
    _die_with_parent()
    if initializer is not None:
        initializer()
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or died
            request = None
        if request is None:
            return
        fn, args = request
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:  # sent back as text: the exception itself may not pickle
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result (pickling fails before anything is written)
            conn.send(("error", f"cannot send result: {exc}"))


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, initializer: Callable[[], None] | None) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_loop, args=(child_conn, initializer), daemon=True)
        self.process.start()
        child_conn.close()
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        """Block until the worker has finished its initializer; False if it died or took too long."""
        if not self.ready:
            try:
                self.ready = self.conn.poll(timeout) and self.conn.recv()[0] == "ready"
            except (EOFError, OSError):
                self.ready = False
        return self.ready

    def kill(self) -> None:
        """SIGKILL and reap the process, close the pipe (idempotent)."""
        self.process.kill()  # a no-op once the process has been reaped
        self.process.join()
        self.conn.close()


class WorkerPool:
    """`workers` processes, each running one call at a time with a `timeout`-second limit.

    Thread-safe. `initializer` (picklable, top-level) runs once in every new worker before it counts as
    ready, so slow imports are not charged to a call's timeout (`start_timeout` bounds them instead).
    """

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 5.0,
        initializer: Callable[[], None] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError(f"need workers >= 1 and timeout > 0, got workers={workers}, timeout={timeout}")
        self.timeout, self.start_timeout = timeout, start_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._initializer = initializer
        self._lock = threading.Lock()
        self._closed = False
        self._all: set[_Worker] = set()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(workers):
            self._idle.put(self._start_worker())

    def _start_worker(self) -> _Worker:
        self._all.add(worker := _Worker(self._ctx, self._initializer))
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill `worker` and put a fresh one in the idle queue (none once the pool is closed)."""
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if not self._closed:
                self._idle.put(self._start_worker())

    def _acquire(self, block: bool) -> _Worker | None:
        """An idle worker that has finished starting, or None when `block` is False and none is idle."""
        while True:
            if self._closed:
                raise RuntimeError("WorkerPool is closed")
            try:
                worker = self._idle.get(block=block, timeout=1.0 if block else None)
            except queue.Empty:
                if block:
                    continue  # re-check `_closed`, then keep waiting
                return None
            if worker.wait_ready(self.start_timeout):
                return worker
            self._replace(worker)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a worker; raises Unscorable on timeout, worker death, or an exception in `fn`."""
        (result,) = self.map(fn, [args])
        if isinstance(result, Unscorable):
            raise result
        return result

    def map(self, fn: Callable[..., Any], args_list: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`[fn(*args) for args in args_list]` spread over the workers, in order; each entry that failed
        (timeout, crash, exception) is an `Unscorable` instance instead of a result."""
        results: list[Any] = [None] * len(args_list)
        pending = list(reversed(list(enumerate(args_list))))
        busy: dict[Connection, tuple[_Worker, int, float]] = {}
        while pending or busy:
            while pending:  # hand out work to every idle worker; block only when nothing is in flight
                worker = self._acquire(block=not busy)
                if worker is None:
                    break
                index, args = pending.pop()
                try:
                    worker.conn.send((fn, args))
                except Exception as exc:  # e.g. `fn` or `args` do not pickle: the worker is still clean
                    self._idle.put(worker)
                    results[index] = Unscorable(f"cannot send the call to a worker: {exc}")
                    continue
                busy[worker.conn] = (worker, index, time.monotonic() + self.timeout)
            if busy:
                self._collect(busy, results)
        return results

    def _collect(self, busy: dict[Connection, tuple[_Worker, int, float]], results: list[Any]) -> None:
        """Wait for the first reply or deadline; store replies, kill and replace workers past deadline."""
        next_deadline = min(deadline for _, _, deadline in busy.values())
        for conn in wait(list(busy), timeout=max(0.0, next_deadline - time.monotonic())):
            worker, index, _ = busy.pop(conn)
            try:
                status, value = conn.recv()
            except (EOFError, OSError):
                results[index] = Unscorable(f"verifier worker died (exit code {worker.process.exitcode})")
                self._replace(worker)
                continue
            results[index] = value if status == "ok" else Unscorable(f"verifier raised {value}")
            self._idle.put(worker)
        now = time.monotonic()
        for conn, (worker, index, deadline) in list(busy.items()):
            if deadline <= now:
                del busy[conn]
                results[index] = Unscorable(f"verifier timed out after {self.timeout:g} s; worker killed")
                self._replace(worker)

    def close(self) -> None:
        """Stop every worker (ask politely, then SIGKILL) and reap them; the pool cannot be used again."""
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        for worker in workers:
            worker.process.join(timeout=0.5)
            worker.kill()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
