// Publish one Herald broadcast job and print its report (amqplib).
//
//     node send_job.js "The VPN is down until 23:00 UTC." alice@example.com bob@example.com
//
// Prints "published <id>", then the job's report as JSON once Herald has
// delivered it (exit 0), or exits 1 if no report comes within REPORT_TIMEOUT
// seconds (0: publish and exit without waiting). The job contract is in
// docs/jobs.md, the producer's side of it in docs/producers.md.
//
// The broker and the names come from the environment variables Herald's own
// configuration uses, with Herald's defaults.

'use strict';

const { randomUUID } = require('node:crypto');
const amqp = require('amqplib');

const AMQP_URL = process.env.HERALD_AMQP__URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';
const JOBS_QUEUE = process.env.HERALD_AMQP__JOBS_QUEUE || 'broadcast.jobs';
const EVENTS_EXCHANGE = process.env.HERALD_AMQP__EVENTS_EXCHANGE || 'broadcast.events';
const REPORT_TIMEOUT = Number(process.env.REPORT_TIMEOUT ?? '30');

async function main(body, recipients) {
  // The id is how you find the job's report: make it unique.
  const job = { id: `example-${randomUUID()}`, to: recipients, body };

  const connection = await amqp.connect(AMQP_URL);
  try {
    // A confirm channel: the broker acknowledges every publish.
    const channel = await connection.createConfirmChannel();
    // Declared exactly as Herald declares it (durable, no arguments), so the
    // job waits in the queue if Herald has not started yet.
    await channel.assertQueue(JOBS_QUEUE, { durable: true });

    let report = null;
    if (REPORT_TIMEOUT > 0) {
      // Bind before publishing: RabbitMQ drops a report no queue is bound for.
      // This queue is private to the connection and goes away with it.
      await channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(queue, EVENTS_EXCHANGE, 'job.report');
      report = new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), REPORT_TIMEOUT * 1000);
        // Reports of other producers' jobs arrive here too: match on the id.
        channel.consume(queue, (message) => {
          if (message && JSON.parse(message.content.toString()).id === job.id) {
            clearTimeout(timer);
            resolve(message.content.toString());
          }
        }, { noAck: true });
      });
    }

    // mandatory: a job no queue takes comes back ('return') before the confirm.
    let returned = false;
    channel.on('return', () => { returned = true; });
    await new Promise((resolve, reject) => {
      channel.publish('', JOBS_QUEUE, Buffer.from(JSON.stringify(job)),
        { persistent: true, contentType: 'application/json', mandatory: true },
        (err) => (err ? reject(new Error('the broker refused the job')) : resolve()));
    });
    if (returned) throw new Error(`no queue ${JOBS_QUEUE} took the job`);
    console.log('published', job.id);

    if (report === null) return 0;
    const text = await report;
    if (text === null) {
      console.error(`no report within ${REPORT_TIMEOUT} s`);
      return 1;
    }
    console.log(text);
    return 0;
  } finally {
    await connection.close();
  }
}

if (process.argv.length < 4) {
  console.error('usage: node send_job.js BODY JID [JID...]');
  process.exit(2);
}
main(process.argv[2], process.argv.slice(3)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err.message); process.exitCode = 1; },
);
