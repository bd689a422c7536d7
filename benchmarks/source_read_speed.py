"""Raw read speed of the two record sources (`kafka.client_library`) on the same topics.

`nudge simulate` fills fresh topics on the configured broker (`scripts/kafka start` runs the
local one); then each source (kafka-python's `MessageSource`, librdkafka's `ConfluentSource`)
reads them from the beginning to their end offsets, `--repeats` times, alternating: records/s
from `assign` to the last record (the client's start excluded), nothing decoded or learned.
Also the cost of one `lag_by_partition()` call once caught up. Prints a table; not part of CI.

  python -m benchmarks.source_read_speed --messages 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bandit.config import KafkaConfig, load_config
from bandit.ports import RecordSource
from benchmarks.consumer_bench import simulate, write_config
from streams.kafka_io import end_offsets

ROOT = Path(__file__).resolve().parents[1]
MESSAGES_PER_EVENT = 1.41  # `nudge simulate`: an impression, 40% with an outcome (measured)


def read_all(source: RecordSource, expected: int, timeout_ms: int) -> tuple[int, float]:
    """(records, seconds) reading every assigned partition from its beginning to `expected`."""
    started = time.perf_counter()
    source.assign({})
    read = 0
    while read < expected:
        read += len(source.poll(timeout_ms))
    return read, time.perf_counter() - started


def lag_call_us(source: RecordSource, calls: int = 2000) -> float:
    """Microseconds of one `lag_by_partition()` (after the read: every watermark known)."""
    started = time.perf_counter()
    for _ in range(calls):
        source.lag_by_partition()
    return (time.perf_counter() - started) / calls * 1e6


def sources() -> dict[str, Callable[[KafkaConfig, list[str]], RecordSource]]:
    from streams.confluent_io import ConfluentSource
    from streams.kafka_io import MessageSource

    return {"kafka-python": MessageSource, "confluent-kafka": ConfluentSource}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="source-read-"))
    run = f"bench-{uuid.uuid4().hex[:8]}"
    config = write_config(args.config, workdir, run, "read", None)
    events = round(args.messages / MESSAGES_PER_EVENT)
    summary = simulate(config, workdir, events, args.seed)
    k = load_config(config, environ={}).kafka
    topics = [k.impressions_topic, k.outcomes_topic]
    total = sum(end_offsets(k, topics).values())
    print(f"{summary['messages']:,} messages ({total:,} in the topics) in {run}.*")

    rates: dict[str, list[float]] = {name: [] for name in sources()}
    lag_us: dict[str, float] = {}
    for repeat in range(args.repeats):
        for name, open_source in sources().items():
            cfg = k.model_copy(update={"group_id": f"{run}-{name}-{repeat}"})
            source = open_source(cfg, topics)
            try:
                read, seconds = read_all(source, total, k.poll_timeout_ms)
                lag_us[name] = lag_call_us(source)
            finally:
                source.close()
            rates[name].append(read / seconds)
            print(f"  {name:16} run {repeat + 1}: {read:,} records in {seconds:.2f} s")

    print(f"\n{'source':16} {'median records/s':>17} {'best':>10} {'lag_by_partition':>17}")
    for name, values in rates.items():
        print(
            f"{name:16} {statistics.median(values):>17,.0f} {max(values):>10,.0f} "
            f"{lag_us[name]:>14.1f} us"
        )


if __name__ == "__main__":
    main()
