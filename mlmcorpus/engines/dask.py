"""The Dask engine: the same jobs on a ``dask.distributed`` cluster, results in input order.

A thin layer over :meth:`distributed.Client.submit`: at most ``in_flight`` futures of a map
are out (twice the cluster's worker threads by default), and their results are taken in
submission order, so the output is the bytes the local engine writes.  Either a
``LocalCluster`` of ``workers`` processes (one thread each) is started for the build, or the
engine attaches to a running scheduler (``scheduler="tcp://host:8786"``) and uses whatever
workers it has; a cluster it made is closed with it, one it attached to is left running.

Keys are explicit and unique per submission (``<job>-<engine token>-<map>-<index>``) rather
than Dask's content hashes: two maps may be handed equal items (the reader's text batches of
two identical files, a unit of two builds of one input into the same directory) whose results
are not interchangeable (a unit's spill record points at files a finished build removed), and
hashing every multi-megabyte unit to make a key would cost the client time for nothing.  The
key also names the task in errors.  Nothing random reaches a job: the token only names keys.

A worker that dies (killed, out of memory) is not an error of the task: the scheduler runs
its tasks again elsewhere, up to ``distributed.scheduler.allowed-failures`` times (3 by
default), and only then fails them with ``KilledWorker`` (a one-line error here).  Jobs are
pure functions of their item (a rerun unit appends its rows again to a spill file and the
earlier copy is left unreferenced), so a rerun is safe.  ``retries`` reruns a task that
*raised*: 0 by default, since every error a job raises (a bad tokenizer, a word splitter that
fails, a full disk) comes back the same the next time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from mlmcorpus.engines.base import Engine
from mlmcorpus.errors import MlmCorpusError

__all__ = ["DaskEngine", "require_distributed"]

T = TypeVar("T")
R = TypeVar("R")


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        return None
    return distributed


#: ``dask.distributed``, or None when it is not installed (an optional dependency).
distributed = _import_distributed()

#: How long to wait for the first worker of a running scheduler before giving up.
WORKER_TIMEOUT = 120.0
#: How often a map looks up the cluster's size again.
RESIZE_SECONDS = 5.0
#: How long to wait for a running scheduler to answer.
CONNECT_TIMEOUT = 30.0

_INSTALL = "the Dask engine needs dask.distributed: pip install 'mlmcorpus[dask]'"


def require_distributed() -> None:
    """Raise a one-line error when ``dask.distributed`` cannot be imported."""
    if distributed is None:
        raise MlmCorpusError(_INSTALL)


def _job_name(fn: Callable) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    name = getattr(inner, "__name__", None) or type(inner).__name__
    return name.strip("_") or "task"


def _start_local_worker(warm: Callable[[], None] | None) -> None:
    """What a worker of our own LocalCluster runs first, as a local pool's (a cluster we attach to
    is not ours to tune): Ctrl-C reaches the whole process group, and the client stops the cluster
    (a worker stopping by itself prints a traceback and loses its task)."""
    from mlmcorpus import runtime

    try:
        runtime.ignore_sigint()
    except ValueError:  # pragma: no cover - not the worker's main thread
        pass
    if warm is not None:
        warm()
    runtime.tune_gc()


class DaskEngine(Engine):
    """Runs jobs on a Dask cluster: a ``LocalCluster`` of ``workers`` processes, or the
    cluster of ``scheduler`` (then ``workers`` is not used).

    ``warm()`` runs once on every worker present (loading the tokenizer); ``in_flight`` bounds the
    futures a map has out (default: twice the cluster's threads, see :attr:`limit`).
    """

    def __init__(
        self,
        workers: int,
        warm: Callable[[], None] | None = None,
        *,
        scheduler: str | None = None,
        in_flight: int | None = None,
        retries: int = 0,
        worker_timeout: float = WORKER_TIMEOUT,
    ):
        require_distributed()
        self.retries = retries
        self.scheduler = scheduler
        self._token = os.urandom(4).hex()  # names keys only
        self._maps = 0
        self._cluster: Any = None
        self._client: Any = None
        self._active: list[deque[Any]] = []  # the pending futures of each map not finished yet
        self._running: set[Any] = set()  # futures left to finish when a map stopped early
        try:
            if scheduler is None:
                try:
                    # dashboard_address ":0": no dashboard on the well-known port (None still
                    # starts the HTTP server there, and a second build would find it taken).
                    self._cluster = distributed.LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                        silence_logs=logging.WARNING,
                    )
                except Exception as e:
                    raise MlmCorpusError(f"cannot start a local Dask cluster of {workers} worker(s) ({e})") from None
                self._client = distributed.Client(self._cluster, set_as_default=False)
            else:
                try:
                    self._client = distributed.Client(scheduler, set_as_default=False, timeout=CONNECT_TIMEOUT)
                except (OSError, TimeoutError) as e:
                    raise MlmCorpusError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({e})") from None
                try:
                    self._client.wait_for_workers(1, timeout=worker_timeout)
                except TimeoutError:
                    raise MlmCorpusError(
                        f"--scheduler {scheduler}: no Dask worker connected within {worker_timeout:g} s "
                        "(start some with: dask worker " + scheduler + ")"
                    ) from None
            self._in_flight = in_flight
            self._sized = time.monotonic()
            self._limit = in_flight or self._twice_the_threads()
            if self._cluster is not None:
                # Workers of ours (as a local pool's): the warm-up, then our collector settings.
                self._client.run(_start_local_worker, warm)
            elif warm is not None:
                # On the workers there now; one that joins later (restarted, added) warms up on its
                # first task, through the job's own per-process cache.  (A WorkerPlugin would also
                # reach those, but stays registered on a cluster that outlives the build.)
                self._client.run(warm)
        except BaseException:
            self.close(cancel=True)
            raise

    @property
    def limit(self) -> int:
        """The futures a map may have out: ``in_flight``, or twice the cluster's threads, looked up
        again every few seconds (workers of a batch system join while the build runs)."""
        if self._in_flight is None and time.monotonic() - self._sized > RESIZE_SECONDS and self._client is not None:
            self._sized = time.monotonic()
            self._limit = self._twice_the_threads()
        return self._limit

    def _twice_the_threads(self) -> int:
        return 2 * max(sum(self._client.nthreads().values()), 1)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (None once closed)."""
        return self._client

    @property
    def parallel(self) -> bool:
        return True

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``map(fn, items)`` on the cluster, in input order; an error stops new tasks and propagates."""
        client = self._client
        if client is None:
            raise MlmCorpusError("the Dask engine is closed")
        self._maps += 1
        prefix = f"{_job_name(fn)}-{self._token}-{self._maps}"
        pending: deque[Any] = deque()
        self._active.append(pending)
        try:
            for i, item in enumerate(items):
                pending.append(client.submit(fn, item, key=f"{prefix}-{i}", pure=False, retries=self.retries))
                limit = self.limit
                while len(pending) >= limit:
                    yield self._result(pending.popleft())
            while pending:
                yield self._result(pending.popleft())
        finally:
            self._active.remove(pending)
            if pending:
                self._stop(pending)
                pending.clear()

    def _result(self, future: Any) -> Any:
        try:
            return future.result()
        except distributed.KilledWorker:
            raise MlmCorpusError(
                f"Dask task {future.key} was lost with its worker each time it ran (workers out of memory? "
                "see the workers' logs)"
            ) from None
        except distributed.CancelledError:
            raise MlmCorpusError(
                f"Dask task {future.key} was cancelled (the scheduler or the client's connection to it went away)"
            ) from None

    def _stop(self, futures: Iterable[Any]) -> None:
        """Cancel the futures not started yet; the running ones are left to finish (see :meth:`close`)."""
        futures = list(futures)
        try:
            started = {key for keys in self._client.processing().values() for key in keys}
        except Exception:  # the scheduler is gone: nothing runs any more
            started = set()
        queued = [f for f in futures if f.key not in started]
        self._running.update(f for f in futures if f.key in started)
        try:
            self._client.cancel(queued)
        except Exception:  # pragma: no cover - the scheduler is gone
            pass

    def close(self, cancel: bool = False) -> None:
        """Wait for tasks still running (a task writes into the output directory: its files must
        be there before anyone cleans up after it), then close the client and a cluster we made."""
        if self._client is None and self._cluster is None:
            return
        try:
            for pending in self._active:  # maps left unfinished (their generators not closed yet)
                if cancel:
                    self._stop(pending)
                else:
                    self._running.update(pending)
                pending.clear()
            if self._running:
                try:
                    distributed.wait(list(self._running))
                except Exception:
                    pass
                self._running.clear()
        finally:
            client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
