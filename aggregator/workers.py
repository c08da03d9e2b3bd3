"""The parse worker: one forked process that parses and normalizes while the pass's own process fetches,
stores and clusters, so both cores work on a large pass.

Forking copies the parent, so the worker is started before the pass starts threads (forking a process with
threads can deadlock the child), with the parent's objects frozen so the child's garbage collector does not
copy every page of them. It ends with the pass's process, however that ends: a worker left behind held
~100 MB and the database open, waiting on a queue nobody writes to.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["POOL_MIN_FEEDS", "start_worker"]

log = logging.getLogger(__name__)

# Passes over at least this many feeds parse and normalize in a worker process, on the other core, while this
# process fetches, stores and clusters: parse + normalize is about 15 ms of CPU per 50-entry feed, and a
# small pass (the service's usual one) is not worth a fork.
POOL_MIN_FEEDS = 32
# prctl(2) option: the signal this process gets when the thread that forked it ends (Linux).
_PR_SET_PDEATHSIG = 1


def start_worker(feeds: int) -> ProcessPoolExecutor | None:
    """One forked worker for a pass over `feeds` feeds, started now (before the pass starts threads); None when
    it is not worth it (a small pass, one core, no fork) or not safe (this process already runs threads)."""
    if feeds < POOL_MIN_FEEDS or (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    if threading.active_count() > 1:
        return None  # forking a process with threads (a long-lived service) can deadlock the child
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    # Frozen, the objects of this process are never visited by the child's garbage collector, which would
    # otherwise write to (and so copy) every page of them: the worker shared ~30 of its ~60 MB without this.
    gc.freeze()
    try:
        pool.submit(int).result(timeout=30)  # fork the worker while this process has a single thread
    except Exception:
        log.warning("no worker process for parsing; parsing in threads", exc_info=True)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    finally:
        gc.unfreeze()
    return pool


def _die_with_parent(parent: int) -> None:
    """First thing in the worker: it ends when the pass's process ends, however that ends.

    On Linux the kernel kills it (PR_SET_PDEATHSIG); everywhere, a thread notices the parent is gone (the
    worker was handed to another parent) within a second.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_exit_without_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_without_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
