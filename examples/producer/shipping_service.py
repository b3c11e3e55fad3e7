#!/usr/bin/env python3
"""A business service that tells a user's browsers their order shipped by writing straight to Herald's
events topic: no HTTP API, one Kafka record in the format of docs/producers.md.

    python3 examples/producer/shipping_service.py --brokers 127.0.0.1:9092 --user alice --order 1235

(`--node-log herald.log` instead of `--brokers` reads the embedded Kafka's address from scripts/run's output.)

The record reaches every connection of the user on every node, and a device that was offline gets it
when it resumes. With --channel it also goes to a channel (a shop's public "orders" feed, say).
Needs confluent-kafka (`pip install confluent-kafka`; scripts/install-deps --test installs it).
"""
import argparse
import json
import re
import sys
import time

from confluent_kafka import Producer


def shipped_records(user, order, channel=None):
    """The records for one shipped order: (key, value, headers) as docs/producers.md describes them."""
    value = json.dumps({"order": order, "status": "shipped", "at": int(time.time() * 1000)}).encode()
    # The id lets a client tell a repeat from a new message; one id per event, not per record.
    headers = [("herald-id", f"order-{order}-shipped".encode()), ("herald-content-type", b"application/json")]
    records = [(user, value, headers)]  # no herald-kind: the key is a user id
    if channel:
        records.append((channel, value, headers + [("herald-kind", b"channel")]))
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--brokers", help="Kafka bootstrap servers")
    where.add_argument("--node-log", help="the output of scripts/run: the embedded Kafka's address is read from it")
    parser.add_argument("--topic", default="herald.events", help="the node's --events-topic")
    parser.add_argument("--user", required=True, help="the user whose browsers are told")
    parser.add_argument("--order", required=True, type=int, help="the order number")
    parser.add_argument("--channel", help="also write to this channel")
    args = parser.parse_args()
    if args.node_log:
        found = re.search(r"kafka\.bootstrap=(\S+)", open(args.node_log, encoding="utf-8", errors="replace").read())
        if not found:
            parser.error(f"{args.node_log} has no kafka.bootstrap= line: is it scripts/run's output?")
        args.brokers = found.group(1)

    producer = Producer({
        "bootstrap.servers": args.brokers,
        # Herald finds a stream in partition murmur2(key) % partitions; librdkafka's default is CRC32,
        # whose records Herald drops as misrouted.
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
    })
    failures = []

    def delivered(error, message):
        if error is not None:
            failures.append(error)
        else:
            print(f"{message.key().decode()} partition {message.partition()} offset {message.offset()}")

    for key, value, headers in shipped_records(args.user, args.order, args.channel):
        producer.produce(args.topic, key=key, value=value, headers=headers, on_delivery=delivered)
    # The order service may consider the user told only once Kafka acknowledged every record.
    if producer.flush(15) != 0 or failures:
        print(f"not delivered: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
