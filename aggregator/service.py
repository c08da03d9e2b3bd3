"""The long-lived service: its lifecycle, signals and config reload, around three parts that work alone.

- poller.py, the scheduling loop: a clock that starts update passes for the feeds due and plans each one's
  next fetch from what the store remembers, so a restart resumes exactly the stored schedule;
- publisher.py, the publishing worker: clustering and rewriting the outputs after passes, debounced, in a
  thread; and the daily prune;
- server.py, the HTTP server (outputs, /health from health.py, the index page).

APScheduler 3 (AsyncIOScheduler) is the one clock they share. A kill -9 at any moment loses at most the fetches
in flight (each feed is stored in its own transaction; outputs are replaced by rename).

Lifecycle (ServiceState):

    NEW --open()--> OPEN --start()--> RUNNING --stop()--> STOPPING --> STOPPED

`open()` loads the config and the store (enough for `poll()`, which tests and embedders call directly);
`start()` adds the clock, the HTTP server and the signal handlers; `run()` does both and waits for
SIGTERM/SIGINT. Stopping stops the clock, gives in-flight fetches `service.grace_seconds` to finish, cancels
the rest, publishes what was stored, closes the store and returns; a second signal skips the grace period.
SIGHUP, or a change of feeds.yaml on disk, reloads the config: feeds are added and removed without a
restart, and a config that does not validate is logged while the old one keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from collections.abc import Coroutine
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import Config, load_config
from .errors import AggregatorError
from .fetch import Fetcher
from .health import health_report
from .models import Clock, PassSummary
from .poller import Poller
from .publisher import Publisher
from .server import HttpServer, create_app, served_outputs
from .store import PruneResult, Store

__all__ = ["Service", "ServiceState", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real clock (UTC); tests pass their own."""
    return datetime.now(UTC)


class ServiceState(StrEnum):
    """Where the service is in its lifecycle."""

    NEW = "new"
    OPEN = "open"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Service:
    """`aggregator run` (poll=True, optionally serve=True) and `aggregator serve` (poll=False, serve=True)."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        database: str | None = None,
        poll: bool = True,
        serve: bool = False,
        host: str | None = None,
        port: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.config_path = Path(config_path)
        self.database = database
        self.polls = poll
        self.serves = serve
        self._host, self._port = host, port
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._handle_signals = handle_signals
        self._signals_installed = False
        self.state = ServiceState.NEW
        self._config: Config | None = None
        self._store: Store | None = None
        self._poller: Poller | None = None
        self._publisher: Publisher | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._http: HttpServer | None = None
        self._config_stamp: tuple[int, int] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()
        self._force_stop = asyncio.Event()
        self._reloading = False
        self._started_at: datetime | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in force (the last one that validated)."""
        if self._config is None:
            raise RuntimeError("the service is not open")
        return self._config

    @property
    def store(self) -> Store:
        """The open store."""
        if self._store is None:
            raise RuntimeError("the service is not open")
        return self._store

    @property
    def poller(self) -> Poller:
        """The scheduling loop (a polling service's)."""
        if self._poller is None:
            raise RuntimeError("the service is not open, or does not poll")
        return self._poller

    @property
    def publisher(self) -> Publisher:
        """The publishing worker (a polling service's)."""
        if self._publisher is None:
            raise RuntimeError("the service is not open, or does not poll")
        return self._publisher

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the HTTP server listens, once started with serve=True."""
        return self._http.address if self._http is not None else None

    async def open(self) -> None:
        """Load and check the config, open the store and register the feeds; raises AggregatorError."""
        if self.state is not ServiceState.NEW:
            return
        config = load_config(self.config_path, self.database)
        served_outputs(config)
        self._config_stamp = self._stat_config()
        self._store = store = Store.open(config.database_path)
        try:
            states = store.sync_feeds(config.sources(), self._clock())
        except BaseException:
            store.close()
            raise
        self._config = config
        if self.polls:
            self._publisher = Publisher(lambda: self.config, store.path, clock=self._clock)
            self._poller = Poller(
                store,
                self._new_fetcher(config),
                clock=self._clock,
                rng=self._rng,
                on_news=self._publisher.note_news,
                after_pass=self._publisher.request,
            )
            self._poller.use_config(config, states)
        self._started_at = self._clock()
        self.state = ServiceState.OPEN

    async def start(self) -> None:
        """Open if needed, then start the clock, the HTTP server and the signal handlers."""
        await self.open()
        if self.state is not ServiceState.OPEN:
            return
        config = self.config
        if self.serves:
            app = create_app(lambda: self.config, self.health)
            host = self._host if self._host is not None else config.service.host
            port = self._port if self._port is not None else config.service.port
            self._http = HttpServer(
                app,
                host,
                port,
                max_connections=config.service.max_connections,
                request_timeout=config.service.request_timeout_seconds,
                reserved_descriptors=self._descriptors_needed(config),
            )
            await self._http.start()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        if config.service.reload_check_seconds > 0:
            self._scheduler.add_job(
                self._check_config_file,
                "interval",
                seconds=config.service.reload_check_seconds,
                id="watch-config",
                coalesce=True,
                max_instances=1,
            )
        if self._publisher is not None:
            self._publisher.start(self._scheduler)
        self._scheduler.start()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            self._signals_installed = True
        self.state = ServiceState.RUNNING
        log.info(
            "service started: %d feeds, polling %s, pid %d",
            len(config.feeds),
            "on" if self.polls else "off",
            os.getpid(),
            extra={"event": "start", "feeds": len(config.feeds)},
        )
        if self._poller is not None:
            self._poller.start(self._scheduler)

    async def run(self) -> None:
        """Start, run until SIGTERM/SIGINT (or `request_stop`), then stop cleanly."""
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask the service to stop (a signal handler); asked twice, in-flight fetches are cancelled at once."""
        if self._stop_requested.is_set():
            log.warning("stop requested again: cancelling in-flight fetches now")
            self._force_stop.set()
        self._stop_requested.set()

    async def stop(self) -> None:
        """Stop the clock, let in-flight fetches finish within the grace period, publish, close everything."""
        if self.state in (ServiceState.STOPPING, ServiceState.STOPPED):
            return
        opened = self.state is not ServiceState.NEW
        self.state = ServiceState.STOPPING
        self._stop_requested.set()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        grace = self._config.service.grace_seconds if self._config is not None else 0.0
        if self._poller is not None:
            await self._poller.stop(grace, self._force_stop)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._publisher is not None:
            await self._publisher.stop()
            await self._publisher.publish()  # what the last passes stored, even if a pass was cancelled
        if self._http is not None:
            await self._http.stop()
        if self._poller is not None:
            await self._poller.close()
        if self._store is not None:
            self._store.close()
        if self._signals_installed:
            # kept until now, so that a second SIGTERM/SIGINT cuts the grace period short
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.state = ServiceState.STOPPED
        if opened:
            log.info("service stopped", extra={"event": "stop"})

    # --- what the parts do, for tests and embedders ----------------------------------------------------------

    async def poll(self, now: datetime | None = None) -> PassSummary | None:
        """Run one pass over the feeds due at `now` (default: the clock), publish, and return the pass's summary;
        None if no feed is due."""
        summary = await self.poller.poll(now)
        if summary is not None:
            await self.publisher.publish()
        return summary

    async def prune(self) -> PruneResult | None:
        """Prune what `retention.keep_days` allows (the daily job); None when retention is not set."""
        return await self.publisher.prune()

    def health(self) -> dict[str, Any]:
        """What /health reports: state, last pass, feeds ok and failing, scheduling drift, process usage."""
        return health_report(
            state=self.state.value,
            started_at=self._started_at,
            feeds=self.store.feed_counts() if self._store is not None else {},
            polling=self._poller.stats() if self._poller is not None else None,
            last_publish=self._publisher.last_publish if self._publisher is not None else None,
        )

    # --- config reload ---------------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload feeds.yaml soon (the SIGHUP handler)."""
        self._spawn(self.reload(), "reload")

    async def reload(self) -> bool:
        """Re-read feeds.yaml: add and remove feeds; a config that does not validate keeps the old one running."""
        if self._reloading or self.state not in (ServiceState.OPEN, ServiceState.RUNNING):
            return False
        self._reloading = True
        try:
            self._config_stamp = self._stat_config()
            try:
                config = load_config(self.config_path, self.database)
                served_outputs(config)
            except AggregatorError as e:
                log.error("config reload failed, still running the previous config: %s", e, extra={"event": "reload"})
                return False
            old = self.config
            if config.database_path != old.database_path:
                log.warning("the database path changed in %s: restart the service to use it", self.config_path)
            if config.service != old.service:
                log.warning("the service settings changed in %s: restart the service to apply them", self.config_path)
            before = {feed.url for feed in old.feeds}
            after = {feed.url for feed in config.feeds}
            now = self._clock()
            states = self.store.sync_feeds(config.sources(), now)
            self._config = config
            if self._poller is not None:
                self._poller.use_config(config, states)
                if (config.fetch, config.allow_private_addresses) != (old.fetch, old.allow_private_addresses):
                    self._poller.use_fetcher(self._new_fetcher(config))
            log.info(
                "config reloaded: %d feeds (%d added, %d removed)",
                len(after),
                len(after - before),
                len(before - after),
                extra={"event": "reload", "feeds": len(after)},
            )
            if self.state is ServiceState.RUNNING and self._poller is not None:
                self._poller.plan_next_look(now)
            return True
        finally:
            self._reloading = False

    def _stat_config(self) -> tuple[int, int] | None:
        try:
            info = self.config_path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    async def _check_config_file(self) -> None:
        stamp = self._stat_config()
        if stamp is not None and stamp != self._config_stamp:
            log.info("%s changed on disk: reloading", self.config_path)
            await self.reload()

    # --- helpers ---------------------------------------------------------------------------------------------

    def _descriptors_needed(self, config: Config) -> int:
        """File descriptors the service may hold beside its HTTP connections: sockets of fetches and their DNS
        lookups (two clients, one for the feeds' own hosts), the database from three threads, parse workers."""
        return 3 * config.fetch.concurrency + 64 if self.polls else 16

    def _new_fetcher(self, config: Config) -> Fetcher:
        return Fetcher(config.fetch, self._transport, allow_private_addresses=config.allow_private_addresses)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
