#!/opt/venv/bin/python
"""Stand-in for Apache Kafka's kafka-topics.sh inside the TherapyBridge image, for the
podman smoke test (deploy/compose.podman.yml): no Kafka image can be pulled there, so the
base compose file's topic-init script runs unchanged against the local Tansu broker, and
this file answers the two calls it makes, through the admin API (aiokafka, in the image):
  kafka-topics.sh --bootstrap-server B --create --if-not-exists --topic T --partitions N
                  --replication-factor R [--config key=value]
  kafka-topics.sh --bootstrap-server B --list
"""
import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def main(args: argparse.Namespace) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap_server, request_timeout_ms=15000)
    for attempt in range(30):  # the broker may still be starting
        try:
            await admin.start()
            break
        except Exception:
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    try:
        if args.list:
            for name in sorted(await admin.list_topics()):
                print(name)
            return 0
        configs = dict(c.split("=", 1) for c in args.config)
        if args.topic in await admin.list_topics():
            print(f"topic {args.topic} exists")
            return 0
        try:
            await admin.create_topics([NewTopic(args.topic, args.partitions, args.replication_factor,
                                                topic_configs=configs)])
        except TopicAlreadyExistsError:
            if not args.if_not_exists:
                raise
        print(f"Created topic {args.topic}.")
        return 0
    finally:
        await admin.close()


parser = argparse.ArgumentParser()
parser.add_argument("--bootstrap-server", required=True)
parser.add_argument("--create", action="store_true")
parser.add_argument("--list", action="store_true")
parser.add_argument("--if-not-exists", action="store_true")
parser.add_argument("--topic")
parser.add_argument("--partitions", type=int, default=1)
parser.add_argument("--replication-factor", type=int, default=1)
parser.add_argument("--config", action="append", default=[])
sys.exit(asyncio.run(main(parser.parse_args())))
