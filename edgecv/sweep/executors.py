"""Where sweep tasks run: local worker processes (``-j N``) or an existing Ray cluster (``--executor ray``).

Both wrap a well-kept scheduler (``concurrent.futures.ProcessPoolExecutor``, Ray) behind three calls:
``submit(fn, *args) -> handle``, ``wait(handles, timeout) -> finished handles`` and ``result(handle)``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable
from typing import Any

from edgecv.errors import EdgecvError, one_line

EXECUTORS = ("local", "ray")


def _init_local_worker(parent_pid: int) -> None:
    """Pool initializer: end with the parent (see ``edgecv.isolation.watch_parent``), then set up the worker."""
    from edgecv.isolation import watch_parent
    from edgecv.sweep.work import init_worker

    watch_parent(parent_pid, graceful=True)
    init_worker()


class LocalExecutor:
    """``jobs`` worker processes (spawned: the parent's threads and imports are not inherited).

    Workers end with edgecv: each watches its parent (parent-death signal and a polling thread), so a kill of
    the main process ends them within a second; :meth:`shutdown` with ``cancel`` (an error or a signal in the
    main process) terminates them (SIGTERM: a worker removes its temporary files and ends its own children;
    SIGKILL after ``TERM_GRACE_S``). The spawned workers do not put the working folder on ``sys.path``
    (``PYTHONSAFEPATH``)."""

    name = "local"
    TERM_GRACE_S = 2.0

    def __init__(self, jobs: int) -> None:
        import os

        from edgecv.isolation import on_forced_exit

        os.environ["PYTHONSAFEPATH"] = "1"  # inherited by the spawned workers (``python -c ...``)
        # After a forced end (signal, killed parent) the resource tracker removes the pool's semaphores, and says
        # so in a warning on the shared stderr after edgecv's one line: it is doing its job, keep it quiet.
        quiet = "ignore:resource_tracker:UserWarning"
        if quiet not in os.environ.get("PYTHONWARNINGS", ""):
            os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
        self.jobs = jobs
        self._pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_local_worker, initargs=(os.getpid(),))
        self._forced = on_forced_exit(self._terminate_workers)

    def _terminate_workers(self) -> None:
        import time

        # the pool's worker processes (a private attribute, stable since Python 3.2)
        procs = [p for p in list((getattr(self._pool, "_processes", None) or {}).values()) if p.is_alive()]
        for p in procs:
            try:
                p.terminate()
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + self.TERM_GRACE_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                try:
                    p.kill()
                except (OSError, ValueError):
                    pass
                p.join(1.0)

    def slots(self) -> int:
        return self.jobs

    def submit(self, fn: Callable, *args: Any):
        return self._pool.submit(fn, *args)

    def wait(self, handles, timeout: float):
        done, _ = cf.wait(list(handles), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle):
        return handle.result()

    def shutdown(self, cancel: bool = False) -> None:
        from edgecv.isolation import forget_forced_exit

        if cancel:  # the pool's own shutdown lets running tasks finish: end the workers first
            self._terminate_workers()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        forget_forced_exit(self._forced)


class RayExecutor:
    """Tasks on a Ray cluster (``address``: ``auto``, ``ray://host:10001`` or ``host:6379``).

    Workers read and write the sweep's output folder, so on a multi-node cluster it must be on a
    filesystem every node sees (NFS or similar); on one machine nothing is needed.
    """

    name = "ray"

    def __init__(self, address: str | None, jobs: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise EdgecvError("--executor ray: Ray is not installed (pip install 'edgecv[ray]')") from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                         runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}})
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise EdgecvError(f"--address: cannot connect to a Ray cluster at {address!r}: {one_line(exc)[:200]}") \
                    from None
        self._remote: dict[Callable, Any] = {}
        self._inflight: set = set()
        self.jobs = jobs

    def slots(self) -> int:
        """Tasks in flight: ``-j`` when given (> 1), else the cluster's CPUs."""
        if self.jobs and self.jobs > 1:
            return self.jobs
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def submit(self, fn: Callable, *args: Any):
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=1)(fn)
        ref = self._remote[fn].remote(*args)
        self._inflight.add(ref)
        return ref

    def wait(self, handles, timeout: float):
        handles = list(handles)
        if not handles:
            return []
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def result(self, handle):
        self._inflight.discard(handle)
        return self._ray.get(handle)

    def shutdown(self, cancel: bool = False) -> None:
        """With ``cancel`` (an error or a signal in edgecv) the tasks still in flight are cancelled with
        ``force=True`` (Ray kills the worker processes running them) before the driver disconnects. A Ray
        instance this process started (no ``--address``) ends with ``ray.shutdown()``, and Ray ties its
        processes to the driver's life; on a cluster, Ray kills the tasks of a job whose driver died."""
        if cancel:
            for ref in list(self._inflight):
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or the cluster is gone
                    pass
        self._inflight.clear()
        self._ray.shutdown()


def make_executor(kind: str, jobs: int, address: str | None):
    if kind == "local":
        if address is not None:
            raise EdgecvError(f"--address applies to --executor ray only. Received: {address!r}")
        from edgecv.validate import worker_count

        return LocalExecutor(worker_count("jobs", jobs, keyword=True))
    if kind == "ray":
        return RayExecutor(address, jobs)
    raise EdgecvError(f"--executor: expected local or ray. Received: {kind!r}")
