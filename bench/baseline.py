"""The exporter a user might write instead of Sluice: confluent-kafka + pyarrow, routing by
signal and writing hourly Parquet (zstd) files per signal, like Sluice's parquet-zstd run.

Reads --records records from --topic as --group, then writes the files and commits. Prints
one JSON line: records, secs (first record to files written and committed), cpu_s,
peak_rss_bytes. Run by sluice-bench; see BENCHMARKS.md."""

import argparse
import collections
import datetime as dt
import json
import os
import resource
import time

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--lake", required=True)
    a = ap.parse_args()

    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
    })
    consumer.subscribe([a.topic])
    # (signal, hour) -> list of records; what a straightforward script keeps in memory.
    buckets = collections.defaultdict(list)
    n, start, last = 0, None, {}
    while n < a.records:
        for msg in consumer.consume(num_messages=10000, timeout=0.5):
            if msg.error():
                continue
            if start is None:
                start = (time.monotonic(), cpu())
            rec = json.loads(msg.value())
            ts = dt.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00"))
            buckets[(rec["signal"], ts.strftime("%Y/%m/%d/%H"))].append(rec)
            last[(msg.topic(), msg.partition())] = msg.offset()
            n += 1
    for (signal, hour), recs in buckets.items():
        table = pa.Table.from_pylist(recs)
        out = os.path.join(a.lake, signal, hour)
        os.makedirs(out, exist_ok=True)
        pq.write_table(table, os.path.join(out, "part-0.parquet"), compression="zstd")
    from confluent_kafka import TopicPartition
    consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)
    secs = time.monotonic() - start[0]
    cpu_s = cpu() - start[1]
    consumer.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"name": "python", "records": n, "secs": secs, "cpu_s": cpu_s, "peak_rss_bytes": peak}))


main()
