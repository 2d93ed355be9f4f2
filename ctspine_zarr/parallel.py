"""One way to run the package's per-case tasks: a local dask scheduler or a dask cluster.

Ingest and statistics run their tasks through :func:`run_tasks`, so ``scheduler`` and
``workers`` mean the same everywhere:

- ``workers`` is how many tasks run at once on this machine: threads with ``"threads"``
  (the default), processes with ``"processes"``, single-threaded worker processes of a new
  ``distributed.LocalCluster`` with ``"distributed"`` (default: the number of CPUs);
  ``"sync"`` runs one task at a time in the calling thread;
- a scheduler address (``"tcp://host:8786"``) or a ``distributed.Client`` runs the tasks
  on that cluster, whose size is its own (``workers`` is not used).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Final

import dask

__all__ = [
    "LOCAL_SCHEDULERS",
    "SCHEDULERS",
    "check_scheduler",
    "check_workers",
    "is_local",
    "progress_bar",
    "run_tasks",
    "with_progress",
]

#: The local dask schedulers.
LOCAL_SCHEDULERS: Final = ("threads", "processes", "sync")
#: Every scheduler name (an address or a Client are accepted too).
SCHEDULERS: Final = (*LOCAL_SCHEDULERS, "distributed")


def is_local(scheduler: Any) -> bool:
    """Whether ``scheduler`` names a local dask scheduler (threads, processes, sync)."""
    return isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS


def check_workers(workers: int | None) -> int:
    """Return ``workers`` (default: the number of CPUs), refusing values below 1."""
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number of at least 1, but is {workers!r}")
    return workers


def check_scheduler(scheduler: Any) -> Any:
    """Return ``scheduler`` if it is one :func:`run_tasks` takes, else raise ValueError."""
    if isinstance(scheduler, str) and (scheduler in SCHEDULERS or "://" in scheduler):
        return scheduler
    if type(scheduler).__name__ == "Client":  # a distributed.Client (not imported for this)
        return scheduler
    raise ValueError(
        f"scheduler must be one of {', '.join(SCHEDULERS)}, a scheduler address "
        f"(tcp://host:8786) or a distributed.Client, but is {scheduler!r}"
    )


def run_tasks(
    tasks: Sequence[Any],
    *,
    scheduler: Any = "threads",
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
    progress_keys: Collection[Any] | None = None,
) -> list[Any]:
    """Compute dask ``tasks`` (delayed objects) and return their results in order.

    Parameters
    ----------
    tasks
        Delayed objects. On local schedulers, independent tasks start from the highest key
        down: name them (``dask_key_name``) to choose the order.
    scheduler
        ``"threads"``, ``"processes"``, ``"sync"``, ``"distributed"`` (a new LocalCluster),
        a scheduler address or a ``distributed.Client``.
    workers
        Tasks at a time on this machine (see the module docstring).
    on_done
        Called once per finished task (progress).
    progress_keys
        On a local scheduler, call ``on_done`` when these keys finish instead (steps
        within the tasks, for a finer progress bar); on a cluster only the tasks are seen.

    Returns
    -------
    list
        The results, in the order of ``tasks``.
    """
    check_scheduler(scheduler)
    if not tasks:
        return []
    if is_local(scheduler):
        keys = set(progress_keys) if progress_keys is not None else {t.key for t in tasks}
        return _run_local(tasks, scheduler, check_workers(workers), on_done, keys)
    if scheduler == "distributed":
        from distributed import Client, LocalCluster

        n = check_workers(workers)
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        with cluster, Client(cluster) as client:
            return _run_on(client, tasks, on_done)
    from distributed import Client

    if isinstance(scheduler, Client):
        return _run_on(scheduler, tasks, on_done)
    with Client(scheduler) as client:
        return _run_on(client, tasks, on_done)


def _run_local(
    tasks: Sequence[Any],
    scheduler: str,
    workers: int,
    on_done: Callable[[], None] | None,
    keys: set[Any],
) -> list[Any]:
    from dask.callbacks import Callback

    class _Done(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if on_done is not None and key in keys:
                on_done()

    with _Done():
        if scheduler == "sync" or workers == 1:
            return list(dask.compute(*tasks, scheduler="sync"))
        # chunksize=1: dask's process pool would otherwise hand out tasks six at a time
        extra = {"chunksize": 1} if scheduler == "processes" else {}
        return list(dask.compute(*tasks, scheduler=scheduler, num_workers=workers, **extra))


def _run_on(client: Any, tasks: Sequence[Any], on_done: Callable[[], None] | None) -> list[Any]:
    from distributed import as_completed

    futures = client.compute(list(tasks))
    for _ in as_completed(futures):
        if on_done is not None:
            on_done()
    return list(client.gather(futures))


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def progress_bar(total: int, *, desc: str, unit: str = "case", enabled: bool = True) -> Any:
    """A tqdm bar on stderr (``update()`` per task, ``close()``); a no-op when disabled.

    On a terminal it redraws ten times a second; when stderr is a file or a pipe it writes
    a line every 30 s at most, not a flood of carriage returns.
    """
    if not enabled or total == 0:
        return _NoBar()
    import sys

    from tqdm import tqdm  # text on stderr; tqdm.auto warns in notebooks without ipywidgets

    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        unit=unit,
        desc=desc,
        dynamic_ncols=True,
        file=sys.stderr,
        mininterval=0.1 if tty else 30.0,
    )


def with_progress(items: Iterable[Any], enabled: bool, desc: str) -> Iterable[Any]:
    """Yield ``items``, advancing a progress bar (shown when ``enabled``) after each."""
    listed = list(items)
    bar = progress_bar(len(listed), desc=desc, enabled=enabled)
    try:
        for item in listed:
            yield item
            bar.update()
    finally:
        bar.close()
