"""`nudge serve`: the decision service's processes, wiring and lifetime around `create_app`.

The parent checks everything that can be checked before a worker starts (config, API keys,
port, spool directory) and fails fast with one line; then uvicorn runs `workers` processes on
one port (VW holds the GIL, so processes, not threads, scale deciding). Each worker builds its
own parts: a `Decider` that waits for the first verified snapshot and hot-reloads, the shared
SQLite spool and decision log, its metrics, and a `Drainer` (only one drains at a time, by
lock) that moves spooled events to Kafka in order whenever the broker is reachable.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bandit.config import Config, load_config
from bandit.decisions import Decider
from bandit.errors import ConfigError, NudgeError, SnapshotError, UsageError
from bandit.ports import MessageSink
from bandit.snapshots import signing_key

log = logging.getLogger("nudge.serve")

CONFIG_ENV = "NUDGE_SERVE_CONFIG"  # the parent tells its workers which config to load
API_KEYS_ENV = "NUDGE_API_KEYS"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Command-line overrides of the `serve:` section."""

    host: str | None = None
    port: int | None = None
    workers: int | None = None
    access_log: bool = False


def load_api_keys(cfg: Config, environ: Mapping[str, str] | None = None) -> frozenset[bytes]:
    """API keys from `NUDGE_API_KEYS` (comma-separated) and `serve.api_keys_file` (one per
    line, `#` comments); an empty set means no authentication."""
    environ = os.environ if environ is None else environ
    keys = {k.strip() for k in environ.get(API_KEYS_ENV, "").split(",") if k.strip()}
    path = cfg.serve.api_keys_file
    if path is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"serve.api_keys_file {path}: cannot read ({exc.strerror})") from None
        keys |= {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}
        if not keys:
            raise ConfigError(f"serve.api_keys_file {path}: no key in it (one key per line)")
    short = sorted(k for k in keys if len(k) < 16)
    if short:
        raise ConfigError(
            f"{len(short)} API key(s) shorter than 16 characters; make one with "
            "`openssl rand -hex 24`"
        )
    return frozenset(k.encode() for k in keys)


def check_serve_setup(cfg: Config, options: ServeOptions) -> tuple[str, int, int]:
    """What can fail before any worker starts, as one-line errors: keys, port, directories."""
    host = options.host or cfg.serve.host
    port = cfg.serve.port if options.port is None else options.port
    workers = options.workers or cfg.serve.workers
    keys = load_api_keys(cfg)
    if not keys and host not in _LOOPBACK:
        raise UsageError(
            f"serve.host {host} is reachable from other machines but no API key is set: set "
            f"{API_KEYS_ENV} or serve.api_keys_file (or serve on 127.0.0.1)"
        )
    signing_key(cfg.snapshots.signing_key_file)  # a bad key file fails now
    _check_port(host, port)
    for field, directory in (("serve.spool_directory", cfg.serve.spool_directory),):
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            probe = Path(directory) / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"{field} {directory}: not writable ({exc.strerror})") from None
    return host, port, workers


def _check_port(host: str, port: int) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"serve.port {port} on {host} is taken; stop what uses it or pass --port"
                ) from None
            raise UsageError(
                f"serve.host {host} port {port}: cannot bind ({exc.strerror})"
            ) from None


class DeciderHolder:
    """The current `Decider`, or None until the first verified snapshot appears; then it
    hot-reloads by itself. Checked every `interval_s` in a daemon thread."""

    def __init__(self, cfg: Config, interval_s: float) -> None:
        self._cfg = cfg
        self._interval = interval_s
        self._decider: Decider | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._wait, name="nudge-first-snapshot", daemon=True)
        if not self._try_load():
            self._thread.start()

    def __call__(self) -> Decider | None:
        return self._decider

    def _try_load(self) -> bool:
        cfg = self._cfg
        try:
            decider = Decider(
                cfg.snapshots.directory,
                rules=cfg.decisions,
                key=signing_key(cfg.snapshots.signing_key_file),
            )
        except (SnapshotError, NudgeError, OSError) as exc:
            self.last_error = str(exc)
            return False
        decider.watch(self._interval)
        self._decider = decider
        self.last_error = None
        log.info("serving policy %s", decider.version)
        return True

    def _wait(self) -> None:
        log.warning("no snapshot yet in %s: decisions get 503 until one appears",
                    self._cfg.snapshots.directory)  # fmt: skip
        while not self._stop.wait(self._interval):
            if self._try_load():
                return

    def close(self) -> None:
        self._stop.set()
        if self._decider is not None:
            self._decider.close()


def kafka_sink_factory(cfg: Config) -> Callable[[], MessageSink]:
    """A Kafka producer for the drainer, made (and the topics created) when the broker is up."""

    def make() -> MessageSink:
        from streams.kafka_io import Producer, ensure_topics

        k = cfg.kafka
        ensure_topics(k, [k.impressions_topic, k.outcomes_topic], k.topic_partitions)
        return Producer(k)

    return make


def kafka_probe(cfg: Config) -> Callable[[], object]:
    """Whether Kafka answers (raises `BrokerError` when not): the drainer asks while idle, so
    readiness notices a broker that went away while nothing needed sending."""

    def probe() -> object:
        from streams.kafka_io import end_offsets

        return end_offsets(cfg.kafka, [cfg.kafka.impressions_topic])

    return probe


class _CountedSink:
    """A sink whose failed sends and flushes are counted in the service's metrics."""

    def __init__(self, sink: MessageSink, on_error: Callable[[], None]) -> None:
        self._sink = sink
        self._on_error = on_error

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        try:
            self._sink.send(topic, key, value, headers)
        except Exception:
            self._on_error()
            raise

    def flush(self, timeout_s: float = 60.0) -> None:
        try:
            self._sink.flush(timeout_s)
        except Exception:
            self._on_error()
            raise

    def close(self) -> None:
        self._sink.close()


def counted(
    factory: Callable[[], MessageSink], on_error: Callable[[], None]
) -> Callable[[], MessageSink]:
    """`factory` whose sinks count their failures, and whose own failure (no broker) counts."""

    def make() -> MessageSink:
        try:
            sink = factory()
        except Exception:
            on_error()
            raise
        return _CountedSink(sink, on_error)

    return make


def build_app(cfg: Config, sink_factory: Callable[[], MessageSink] | None = None) -> object:
    """One worker's app: its Decider, the shared spool and decision log, metrics and a drainer,
    started and stopped with the app's lifespan."""
    from fastapi import FastAPI

    from nudge.service.app import ServiceParts, create_app
    from nudge.service.decision_log import DecisionLog
    from nudge.service.metrics import ServiceMetrics
    from streams.spool import Drainer, Spool

    s = cfg.serve
    spool = Spool(s.spool_directory, max_events=s.spool_max_events, max_bytes=s.spool_max_bytes)
    decisions = DecisionLog(spool, remember_s=s.remember_s, deferred_expiry_s=s.deferred_expiry_s)
    holder = DeciderHolder(cfg, s.reload_interval_s)
    metrics = ServiceMetrics()
    factory = counted(sink_factory or kafka_sink_factory(cfg), metrics.produce_error)
    drainer = Drainer(spool, factory, timeout_s=s.produce_timeout_s, probe=kafka_probe(cfg))
    parts = ServiceParts(
        config=cfg,
        decider=holder,
        spool=spool,
        decisions=decisions,
        metrics=metrics,
        api_keys=load_api_keys(cfg),
    )
    app: FastAPI = create_app(parts)
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        drainer.start()
        try:
            async with previous(a):
                yield
        finally:
            drainer.stop()
            holder.close()
            decisions.close()
            spool.close()

    app.router.lifespan_context = lifespan
    return app


def app_factory() -> object:
    """Called by uvicorn in each worker: the config path comes from the parent's environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return build_app(load_config(Path(os.environ.get(CONFIG_ENV, "config.yaml"))))


def serve(config_path: Path, cfg: Config, options: ServeOptions) -> None:
    """Check, then run uvicorn with the configured workers until SIGTERM/SIGINT."""
    import uvicorn

    from nudge.service.metrics import prepare_multiprocess_dir

    host, port, workers = check_serve_setup(cfg, options)
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    prepare_multiprocess_dir(Path(cfg.serve.spool_directory) / "prometheus")
    keys = "API keys required" if load_api_keys(cfg) else "NO API keys (open: localhost only)"
    log.info("serving on http://%s:%d with %d worker(s); %s; snapshots from %s",
             host, port, workers, keys, cfg.snapshots.directory)  # fmt: skip
    uvicorn.run(
        "nudge.service.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=options.access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
