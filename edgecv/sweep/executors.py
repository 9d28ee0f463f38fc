"""Where sweep tasks run: local worker processes (``-j N``) or an existing Ray cluster (``--executor ray``).

Both wrap a well-kept scheduler (``concurrent.futures.ProcessPoolExecutor``, Ray) behind three calls:
``submit(fn, *args) -> handle``, ``wait(handles, timeout) -> finished handles`` and ``result(handle)``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable
from typing import Any

from edgecv.errors import EdgecvError

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """``jobs`` worker processes (spawned: the parent's threads and imports are not inherited)."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        from edgecv.sweep.work import init_worker

        self.jobs = jobs
        self._pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=init_worker)

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
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


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
                raise EdgecvError(f"--address: cannot connect to a Ray cluster at {address!r}: "
                                  f"{' '.join(str(exc).split())[:200]}") from None
        self._remote: dict[Callable, Any] = {}
        self.jobs = jobs

    def slots(self) -> int:
        """Tasks in flight: ``-j`` when given (> 1), else the cluster's CPUs."""
        if self.jobs and self.jobs > 1:
            return self.jobs
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def submit(self, fn: Callable, *args: Any):
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=1)(fn)
        return self._remote[fn].remote(*args)

    def wait(self, handles, timeout: float):
        handles = list(handles)
        if not handles:
            return []
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def result(self, handle):
        return self._ray.get(handle)

    def shutdown(self, cancel: bool = False) -> None:
        self._ray.shutdown()


def make_executor(kind: str, jobs: int, address: str | None):
    if kind == "local":
        if address is not None:
            raise EdgecvError(f"--address applies to --executor ray only. Received: {address!r}")
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor(address, jobs)
    raise EdgecvError(f"--executor: expected local or ray. Received: {kind!r}")
