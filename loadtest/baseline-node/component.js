"use strict";

// A broadcast component written the plain non-blocking way: one XEP-0114
// connection (xmpp.js) with an onPresence and an onMessage callback, and one
// RabbitMQ consumer (amqplib). Each job is fanned out with one <message/> per
// reachable recipient, written to the socket without waiting for anything,
// then its report is published and the job acknowledged. It exists to be
// measured side by side with Herald by herald-loadtest; see README.md.

const { component, xml } = require("@xmpp/component");
const amqp = require("amqplib");

function env(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== "") return value;
  if (fallback !== undefined) return fallback;
  console.error(`baseline: environment variable ${name} is required`);
  process.exit(2);
}

const config = {
  xmppHost: env("XMPP_HOST", "127.0.0.1"),
  xmppPort: Number(env("XMPP_PORT", "5347")),
  domain: env("XMPP_DOMAIN").toLowerCase(),
  secret: env("XMPP_SECRET"),
  amqpUrl: env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
  jobsQueue: env("JOBS_QUEUE", "broadcast.jobs"),
  eventsExchange: env("EVENTS_EXCHANGE", "broadcast.events"),
  deadLetterQueue: env("DEAD_LETTER_QUEUE", "broadcast.jobs.dead"),
  prefetch: Number(env("PREFETCH", "100")),
};
if (!Number.isInteger(config.prefetch) || config.prefetch < 1) {
  console.error("baseline: PREFETCH must be a positive integer");
  process.exit(2);
}

// ---------------------------------------------------------------------------
// Presence book: bare JID -> Map(resource -> { show, priority }).

const book = new Map();
let bookChanged = false;

function bare(jid) {
  const slash = jid.indexOf("/");
  return slash === -1 ? jid : jid.slice(0, slash);
}

function resourceOf(jid) {
  const slash = jid.indexOf("/");
  return slash === -1 ? "" : jid.slice(slash + 1);
}

// Lower-cases the local part and domain, keeps the resource as it is.
function normalise(jid) {
  const slash = jid.indexOf("/");
  if (slash === -1) return jid.toLowerCase();
  return jid.slice(0, slash).toLowerCase() + jid.slice(slash);
}

function setAvailable(fullJid, show, priority) {
  const user = bare(fullJid);
  let resources = book.get(user);
  if (!resources) {
    resources = new Map();
    book.set(user, resources);
  }
  resources.set(resourceOf(fullJid), { show, priority });
  bookChanged = true;
}

function setUnavailable(jid) {
  const user = bare(jid);
  const resources = book.get(user);
  if (!resources) return;
  const resource = resourceOf(jid);
  if (resource === "") {
    book.delete(user);
  } else {
    resources.delete(resource);
    if (resources.size === 0) book.delete(user);
  }
  bookChanged = true;
}

function onPresence(stanza) {
  const from = stanza.attrs.from;
  const to = stanza.attrs.to;
  if (!from) return;
  const jid = normalise(from);
  switch (stanza.attrs.type) {
    case undefined: {
      const show = stanza.getChildText("show") || "";
      const priority = Number.parseInt(stanza.getChildText("priority") || "0", 10) || 0;
      setAvailable(jid, show, priority);
      break;
    }
    case "unavailable":
      setUnavailable(jid);
      break;
    case "error":
      setUnavailable(bare(jid));
      break;
    case "probe":
      send(xml("presence", { from: to || config.domain, to: bare(jid) }));
      break;
    case "subscribe":
      send(xml("presence", { from: to || config.domain, to: bare(jid), type: "subscribed" }));
      break;
    default:
      break;
  }
}

function onMessage(stanza) {
  const body = stanza.getChildText("body");
  if (body !== null && stanza.attrs.type !== "error") {
    console.log(`baseline message from=${stanza.attrs.from} to=${stanza.attrs.to}`);
  }
}

let failedSends = 0;

// Once a second: the size of the presence book when it changed, and the
// writes that failed since the last tick (e.g. while the stream was down).
const tickTimer = setInterval(() => {
  if (failedSends > 0) {
    console.error(`baseline: ${failedSends} stanzas could not be written`);
    failedSends = 0;
  }
  if (!bookChanged) return;
  bookChanged = false;
  let resources = 0;
  for (const r of book.values()) resources += r.size;
  console.log(`baseline presence users=${book.size} resources=${resources}`);
}, 1000);

// ---------------------------------------------------------------------------
// XMPP side.

const xmpp = component({
  service: `xmpp://${config.xmppHost}:${config.xmppPort}`,
  domain: config.domain,
  password: config.secret,
});

// Writes the stanza to the socket and moves on; a failed write is only counted.
function send(stanza) {
  xmpp.send(stanza).catch(() => {
    failedSends += 1;
  });
}

xmpp.on("error", (err) => {
  console.error(`baseline: xmpp error: ${err.message}`);
});

xmpp.on("offline", () => {
  console.error("baseline: xmpp offline");
});

xmpp.on("disconnect", () => {
  // Whatever presence we knew is stale now: forget it. xmpp.js reconnects by
  // itself and the server sends the presence of users who log in from then on.
  if (book.size > 0) {
    book.clear();
    bookChanged = true;
  }
  console.error("baseline: xmpp disconnected");
});

xmpp.on("stanza", (stanza) => {
  if (stanza.is("presence")) onPresence(stanza);
  else if (stanza.is("message")) onMessage(stanza);
});

// ---------------------------------------------------------------------------
// Jobs.

const TYPES = new Set(["chat", "normal", "headline"]);
const POLICIES = new Set(["available", "online"]);
const LOCAL_PART = /^[^\s@/"&'<>:]+$/;
const DOMAIN_PART = /^[^\s@/"&'<>]+$/;

class InvalidJob extends Error {}

function optionalString(job, field) {
  const value = job[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") throw new InvalidJob(`field \`${field}\`: must be a string`);
  return value;
}

// Parses and checks a job; throws InvalidJob with the reason for dead letters.
function parseJob(content) {
  let job;
  try {
    job = JSON.parse(content.toString("utf8"));
  } catch (err) {
    throw new InvalidJob(`not a valid job: ${err.message}`);
  }
  if (job === null || typeof job !== "object" || Array.isArray(job)) {
    throw new InvalidJob("not a valid job: a job is a JSON object");
  }
  if (typeof job.id !== "string") throw new InvalidJob("not a valid job: missing field `id`");
  if (job.id.trim() === "") throw new InvalidJob("field `id`: must not be empty");
  if (typeof job.body !== "string") throw new InvalidJob("not a valid job: missing field `body`");
  if (job.body.trim() === "") throw new InvalidJob("field `body`: must not be empty");
  const subject = optionalString(job, "subject");
  const to = job.to === undefined ? [] : job.to;
  if (!Array.isArray(to) || to.some((r) => typeof r !== "string")) {
    throw new InvalidJob("field `to`: must be an array of strings");
  }
  const type = job.type === undefined ? "chat" : job.type;
  if (!TYPES.has(type)) throw new InvalidJob(`field \`type\`: unknown variant ${JSON.stringify(type)}`);
  const policy = job.policy === undefined ? "available" : job.policy;
  if (!POLICIES.has(policy)) {
    throw new InvalidJob(`field \`policy\`: unknown variant ${JSON.stringify(policy)}`);
  }
  const from = optionalString(job, "from") ?? "herald";
  if (!LOCAL_PART.test(from)) {
    throw new InvalidJob('field `from`: must be a bare local part such as "alerts"');
  }
  return {
    id: job.id,
    to,
    body: job.body,
    subject: subject === "" ? null : subject,
    type,
    policy,
    from: from.toLowerCase(),
  };
}

// Sorts one `to` entry: a bare user JID (normalised) or null when it is not
// one Herald could address (not a JID, a resource, no local part, our domain).
function userJid(entry) {
  const jid = normalise(entry);
  if (jid.includes("/")) return null;
  const at = jid.indexOf("@");
  if (at <= 0) return null;
  const local = jid.slice(0, at);
  const domain = jid.slice(at + 1);
  if (!LOCAL_PART.test(local) || !DOMAIN_PART.test(domain)) return null;
  if (domain === config.domain) return null;
  return jid;
}

function reachable(user, policy) {
  const resources = book.get(user);
  if (!resources || resources.size === 0) return "offline";
  for (const { show, priority } of resources.values()) {
    if (priority < 0) continue;
    if (policy === "online" || show === "" || show === "chat") return "sent";
  }
  return "unavailable";
}

function runJob(job) {
  const from = `${job.from}@${config.domain}`;
  const report = {
    id: job.id,
    recipients: 0,
    sent: 0,
    skipped: { offline: 0, unavailable: 0, invalid: 0 },
  };
  const seen = new Set();
  for (const entry of job.to) {
    const user = userJid(entry);
    const key = user ?? normalise(entry);
    if (seen.has(key)) continue;
    seen.add(key);
    report.recipients += 1;
    if (user === null) {
      report.skipped.invalid += 1;
      continue;
    }
    const outcome = reachable(user, job.policy);
    if (outcome !== "sent") {
      report.skipped[outcome] += 1;
      continue;
    }
    const children = [];
    if (job.subject !== null) children.push(xml("subject", {}, job.subject));
    children.push(xml("body", {}, job.body));
    send(xml("message", { from, to: user, type: job.type }, ...children));
    report.sent += 1;
  }
  return report;
}

// ---------------------------------------------------------------------------
// AMQP side, and the order things start and stop in.

let connection = null;
let channel = null;
let consumerTag = null;
let stopping = false;

function onJob(msg) {
  if (msg === null) {
    console.error("baseline: the broker cancelled the consumer");
    shutdown(1);
    return;
  }
  let job;
  try {
    job = parseJob(msg.content);
  } catch (err) {
    if (!(err instanceof InvalidJob)) throw err;
    const properties = { ...msg.properties };
    properties.headers = { ...(msg.properties.headers || {}), "x-herald-error": err.message };
    properties.persistent = true;
    delete properties.deliveryMode;
    channel.sendToQueue(config.deadLetterQueue, msg.content, properties);
    channel.ack(msg);
    console.error(`baseline: dead-lettered a job: ${err.message}`);
    return;
  }
  const report = runJob(job);
  channel.publish(config.eventsExchange, "job.report", Buffer.from(JSON.stringify(report)), {
    contentType: "application/json",
    persistent: true,
  });
  channel.ack(msg);
}

async function startAmqp() {
  connection = await amqp.connect(config.amqpUrl);
  connection.on("error", (err) => console.error(`baseline: amqp error: ${err.message}`));
  connection.on("close", () => {
    if (!stopping) {
      console.error("baseline: amqp connection closed");
      shutdown(1);
    }
  });
  channel = await connection.createChannel();
  channel.on("error", (err) => console.error(`baseline: amqp channel error: ${err.message}`));
  channel.on("close", () => {
    if (!stopping) {
      console.error("baseline: amqp channel closed");
      shutdown(1);
    }
  });
  await channel.assertQueue(config.jobsQueue, { durable: true });
  await channel.assertQueue(config.deadLetterQueue, { durable: true });
  await channel.assertExchange(config.eventsExchange, "topic", { durable: true });
  await channel.prefetch(config.prefetch);
  const ok = await channel.consume(config.jobsQueue, onJob, { noAck: false });
  consumerTag = ok.consumerTag;
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  clearInterval(tickTimer);
  // Give up on a clean close after a few seconds, still with the same code.
  setTimeout(() => process.exit(code), 5000).unref();
  try {
    if (channel && consumerTag) await channel.cancel(consumerTag);
    if (channel) await channel.close();
    if (connection) await connection.close();
  } catch (err) {
    console.error(`baseline: closing amqp: ${err.message}`);
  }
  try {
    await xmpp.stop();
  } catch (err) {
    console.error(`baseline: closing xmpp: ${err.message}`);
  }
  process.exit(code);
}

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));

async function main() {
  await xmpp.start();
  await startAmqp();
  console.log(
    `baseline ready domain=${config.domain} jobs_queue=${config.jobsQueue} prefetch=${config.prefetch}`,
  );
}

main().catch((err) => {
  console.error(`baseline: cannot start: ${err.message}`);
  shutdown(1);
});
