#!/opt/venv/bin/python
"""Stand-in for Apache Kafka's kafka-broker-api-versions.sh (the base compose file's broker
healthcheck) inside the TherapyBridge image: exits 0 when the broker answers a metadata request."""
import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def main(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        return 0
    except Exception as exc:
        print(f"broker not ready: {exc}", file=sys.stderr)
        return 1
    finally:
        await admin.close()


parser = argparse.ArgumentParser()
parser.add_argument("--bootstrap-server", required=True)
sys.exit(asyncio.run(main(parser.parse_args().bootstrap_server)))
