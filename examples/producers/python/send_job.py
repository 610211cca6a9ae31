"""Publish one Herald broadcast job and print its report (pika).

    python send_job.py "The VPN is down until 23:00 UTC." alice@example.com bob@example.com

Prints "published <id>", then the job's report as JSON once Herald has
delivered it (exit 0), or exits 1 if no report comes within REPORT_TIMEOUT
seconds (0: publish and exit without waiting). The job contract is in
docs/jobs.md, the producer's side of it in docs/producers.md.

The broker and the names come from the environment variables Herald's own
configuration uses, with Herald's defaults.
"""

import json
import os
import sys
import time
import uuid

import pika

AMQP_URL = os.environ.get("HERALD_AMQP__URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
JOBS_QUEUE = os.environ.get("HERALD_AMQP__JOBS_QUEUE", "broadcast.jobs")
EVENTS_EXCHANGE = os.environ.get("HERALD_AMQP__EVENTS_EXCHANGE", "broadcast.events")
REPORT_TIMEOUT = float(os.environ.get("REPORT_TIMEOUT", "30"))


def main(body, recipients):
    # The id is how you find the job's report: make it unique.
    job = {"id": f"example-{uuid.uuid4()}", "to": recipients, "body": body}

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    # Publisher confirms: basic_publish returns only once the broker has the
    # job, and raises if it refuses it or cannot route it.
    channel.confirm_delivery()
    # Declared exactly as Herald declares it (durable, no arguments), so the
    # job waits in the queue if Herald has not started yet.
    channel.queue_declare(JOBS_QUEUE, durable=True)

    reports = None
    if REPORT_TIMEOUT > 0:
        # Bind before publishing: RabbitMQ drops a report no queue is bound for.
        # This queue is private to the connection and goes away with it.
        channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
        reports = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(reports, EVENTS_EXCHANGE, routing_key="job.report")

    channel.basic_publish(
        exchange="",
        routing_key=JOBS_QUEUE,
        body=json.dumps(job),
        properties=pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
        ),
        mandatory=True,
    )
    print("published", job["id"], flush=True)

    found = reports is None
    if reports is not None:
        deadline = time.monotonic() + REPORT_TIMEOUT
        # Reports of other producers' jobs arrive here too: match on the id.
        for method, _properties, payload in channel.consume(
            reports, auto_ack=True, inactivity_timeout=1
        ):
            if method is not None and json.loads(payload).get("id") == job["id"]:
                print(payload.decode(), flush=True)
                found = True
                break
            if time.monotonic() >= deadline:
                print(f"no report within {REPORT_TIMEOUT:g} s", file=sys.stderr)
                break
    connection.close()
    return 0 if found else 1


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} BODY JID [JID...]")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
