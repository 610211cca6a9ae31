"use strict";

// End-to-end check of component.js against a private Prosody or ejabberd and
// the local RabbitMQ (127.0.0.1:5672), with real c2s logins. See README.md.
//
//   node check.js            behaviour check (exit 0 when every check passes)
//   node check.js --bench    rough throughput: 1 job x N recipients vs
//                            N jobs x 1 recipient, messages counted on arrival
//
// Environment: XMPP_SERVER (prosody, the default, or ejabberd), AMQP_URL
// (default amqp://guest:guest@127.0.0.1:5672/%2f), PROSODY_BIN (default
// prosody), PROSODY_LOG / EJABBERD_LOG (server log level), BENCH_USERS
// (default 200), BENCH_ROUNDS (default 25: messages per mode = users x
// rounds), KEEP_DIR=1 keeps the server's directory (config, data, log).

const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

const amqp = require("amqplib");
// @xmpp/client is an ES module: loaded in main().
let client;
let xml;

const DOMAIN = "localhost";
const COMPONENT_DOMAIN = "broadcast.localhost";
const ROSTER_CONTACT = `herald@${COMPONENT_DOMAIN}`;
const AMQP_URL = process.env.AMQP_URL || "amqp://guest:guest@127.0.0.1:5672/%2f";
const TEMPLATE = path.join(__dirname, "..", "..", "deploy", "prosody", "prosody.cfg.lua.in");
const OVERALL_TIMEOUT_MS = 180_000;

// ---------------------------------------------------------------------------
// Small helpers.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, predicate, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const luaString = (s) =>
  '"' + s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") + '"';

// Prosody's datamanager file-name encoding: every non-alphanumeric byte as %xx.
const encodeName = (s) =>
  [...Buffer.from(s, "utf8")]
    .map((b) => (/[A-Za-z0-9]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : "%" + b.toString(16).padStart(2, "0")))
    .join("");

// ---------------------------------------------------------------------------
// A private Prosody: config from the repository's template, users written
// straight into its storage files, each with herald@broadcast.localhost
// (subscription both) in the roster so their presence reaches the component.

class Prosody {
  constructor(users) {
    const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
    this.dir = fs.mkdtempSync(path.join(base, "baseline-prosody-"));
    this.secret = "secret-" + crypto.randomBytes(8).toString("hex");
    this.users = users;
    this.child = null;
    const host = path.join(this.dir, "data", encodeName(DOMAIN));
    fs.mkdirSync(path.join(host, "accounts"), { recursive: true });
    fs.mkdirSync(path.join(host, "roster"), { recursive: true });
    fs.mkdirSync(path.join(this.dir, "certs"));
    const roster =
      `return {\n\t[false] = { ["version"] = 1; ["pending"] = {}; };\n` +
      `\t[${luaString(ROSTER_CONTACT)}] = { ["subscription"] = "both"; ["groups"] = {}; ["name"] = "Herald"; };\n};\n`;
    for (const user of users) {
      const file = encodeName(user) + ".dat";
      fs.writeFileSync(path.join(host, "accounts", file), `return { ["password"] = ${luaString(this.password(user))}; };\n`);
      fs.writeFileSync(path.join(host, "roster", file), roster);
    }
  }

  password(user) {
    return `pw-${user}`;
  }

  get log() {
    return path.join(this.dir, "prosody.log");
  }

  async start() {
    this.c2sPort = await freePort();
    this.componentPort = await freePort();
    const config = fs
      .readFileSync(TEMPLATE, "utf8")
      .replaceAll("@DATA_DIR@", path.join(this.dir, "data"))
      .replaceAll("@PID_FILE@", path.join(this.dir, "prosody.pid"))
      .replaceAll("@LOG_FILE@", this.log)
      .replaceAll("@CERTS_DIR@", path.join(this.dir, "certs"))
      .replaceAll("@LOG_LEVEL@", process.env.PROSODY_LOG || "info")
      .replaceAll("@C2S_PORT@", String(this.c2sPort))
      .replaceAll("@COMPONENT_PORT@", String(this.componentPort))
      .replaceAll("@COMPONENT_SECRET@", this.secret);
    const configPath = path.join(this.dir, "prosody.cfg.lua");
    fs.writeFileSync(configPath, config);
    const out = fs.openSync(path.join(this.dir, "prosody.stdout"), "a");
    this.child = spawn(process.env.PROSODY_BIN || "prosody", ["-F", "--config", configPath], {
      cwd: this.dir,
      stdio: ["ignore", out, out],
    });
    fs.closeSync(out);
    this.exited = false;
    this.child.on("exit", () => (this.exited = true));
    await waitFor(
      "Prosody to listen",
      () => {
        if (this.exited) throw new Error(`Prosody exited; see ${this.log}`);
        const log = fs.existsSync(this.log) ? fs.readFileSync(this.log, "utf8") : "";
        return (
          log.includes(`Activated service 'c2s' on [127.0.0.1]:${this.c2sPort}`) &&
          log.includes(`Activated service 'component' on [127.0.0.1]:${this.componentPort}`)
        );
      },
      20_000,
    );
  }

  async stop() {
    if (this.child && !this.exited) {
      this.child.kill("SIGTERM");
      const deadline = Date.now() + 10_000;
      while (!this.exited && Date.now() < deadline) await sleep(20);
      if (!this.exited) this.child.kill("SIGKILL");
    }
    if (process.env.KEEP_DIR === "1") console.log(`kept Prosody's directory ${this.dir}`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// A private ejabberd 23.01, run as a plain Erlang node with the repository's
// config template; users and rosters provisioned by one RPC that loops inside
// the node (the same approach as the Rust test harness).

const EJABBERD_TEMPLATE = path.join(__dirname, "..", "..", "deploy", "ejabberd", "ejabberd.yml.in");

const EJABBERD_PROVISION = `
Env = fun(Name) -> unicode:characters_to_binary(os:getenv(Name)) end,
Node = binary_to_atom(Env("BASELINE_EJABBERD_NODE")),
Host = Env("BASELINE_EJABBERD_HOST"),
[ContactUser, ContactServer] = binary:split(Env("BASELINE_EJABBERD_CONTACT"), <<"@">>),
Contact = {ContactUser, ContactServer, <<>>},
{ok, Text} = file:read_file(Env("BASELINE_EJABBERD_USERS")),
Accounts = [list_to_tuple(binary:split(Line, <<"\t">>))
            || Line <- binary:split(Text, <<"\n">>, [global, trim_all])],
Provision = fun() ->
    lists:foreach(
      fun({User, Password}) ->
          ok = ejabberd_auth:try_register(User, Host, Password),
          {atomic, _} = mod_roster:set_roster(
                          {roster, {User, Host, Contact}, {User, Host}, Contact,
                           <<"Herald">>, both, none, [], <<>>, []})
      end, Accounts),
    length(Accounts)
end,
Expected = length(Accounts),
case rpc:call(Node, erlang, apply, [Provision, []], infinity) of
    Expected -> halt(0);
    Other -> io:format("provisioning failed: ~p~n", [Other]), halt(1)
end.
`;

function ejabberdLibs() {
  for (const dir of ["/usr/lib/erlang/lib", ...fs.readdirSync("/usr/lib").map((d) => path.join("/usr/lib", d))]) {
    let entries;
    try {
      entries = fs.readdirSync(dir);
    } catch {
      continue;
    }
    if (entries.some((e) => e.startsWith("ejabberd-") && fs.existsSync(path.join(dir, e, "ebin", "ejabberd.app")))) {
      return dir;
    }
  }
  throw new Error("ejabberd is not installed (no ejabberd-*/ebin/ejabberd.app under /usr/lib)");
}

class Ejabberd {
  constructor(users) {
    const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
    this.dir = fs.mkdtempSync(path.join(base, "baseline-ejabberd-"));
    this.secret = "secret-" + crypto.randomBytes(8).toString("hex");
    this.node = `baseline-ejabberd-${crypto.randomBytes(6).toString("hex")}@localhost`;
    this.cookie = "baseline-" + crypto.randomBytes(8).toString("hex");
    this.users = users;
    this.child = null;
  }

  password(user) {
    return `pw-${user}`;
  }

  get log() {
    return path.join(this.dir, "ejabberd.log");
  }

  erlEnv() {
    return { ...process.env, ERL_LIBS: ejabberdLibs(), ERL_EPMD_ADDRESS: "127.0.0.1", ERL_CRASH_DUMP_BYTES: "0" };
  }

  async start() {
    this.c2sPort = await freePort();
    this.componentPort = await freePort();
    const configPath = path.join(this.dir, "ejabberd.yml");
    fs.writeFileSync(
      configPath,
      fs
        .readFileSync(EJABBERD_TEMPLATE, "utf8")
        .replaceAll("@LOG_LEVEL@", process.env.EJABBERD_LOG || "info")
        .replaceAll("@C2S_PORT@", String(this.c2sPort))
        .replaceAll("@COMPONENT_PORT@", String(this.componentPort))
        .replaceAll("@COMPONENT_SECRET@", this.secret),
    );
    const out = fs.openSync(path.join(this.dir, "ejabberd.stdout"), "a");
    const args = ["-sname", this.node, "-setcookie", this.cookie, "-noshell", "-noinput"];
    args.push("-kernel", "inet_dist_use_interface", "{127,0,0,1}");
    args.push("-mnesia", "dir", JSON.stringify(path.join(this.dir, "mnesia")));
    args.push("-ejabberd", "quiet", "true", "log_rotate_size", "infinity", "-s", "ejabberd");
    this.child = spawn("erl", args, {
      cwd: this.dir,
      env: { ...this.erlEnv(), EJABBERD_CONFIG_PATH: configPath, EJABBERD_LOG_PATH: this.log },
      stdio: ["ignore", out, out],
    });
    fs.closeSync(out);
    this.exited = false;
    this.child.on("exit", () => (this.exited = true));
    await waitFor(
      "ejabberd to listen",
      () => {
        if (this.exited) throw new Error(`ejabberd exited; see ${this.log}`);
        const log = fs.existsSync(this.log) ? fs.readFileSync(this.log, "utf8") : "";
        return (
          log.includes(`Start accepting TCP connections at 127.0.0.1:${this.c2sPort} for ejabberd_c2s`) &&
          log.includes(`Start accepting TCP connections at 127.0.0.1:${this.componentPort} for ejabberd_service`)
        );
      },
      30_000,
    );
    const usersFile = path.join(this.dir, "users.tsv");
    fs.writeFileSync(usersFile, this.users.map((u) => `${u}\t${this.password(u)}\n`).join(""));
    const ctl = [`-sname`, `baseline-ctl-${crypto.randomBytes(6).toString("hex")}@localhost`];
    ctl.push("-setcookie", this.cookie, "-hidden", "-noshell", "-noinput");
    ctl.push("-kernel", "inet_dist_use_interface", "{127,0,0,1}", "-eval", EJABBERD_PROVISION);
    const code = await new Promise((resolve) => {
      const provision = spawn("erl", ctl, {
        cwd: this.dir,
        env: {
          ...this.erlEnv(),
          BASELINE_EJABBERD_NODE: this.node,
          BASELINE_EJABBERD_HOST: DOMAIN,
          BASELINE_EJABBERD_CONTACT: ROSTER_CONTACT,
          BASELINE_EJABBERD_USERS: usersFile,
        },
        stdio: ["ignore", "inherit", "inherit"],
      });
      provision.on("exit", resolve);
    });
    if (code !== 0) throw new Error(`provisioning ejabberd users failed (exit ${code})`);
  }

  async stop() {
    if (this.child && !this.exited) {
      this.child.kill("SIGTERM");
      const deadline = Date.now() + 15_000;
      while (!this.exited && Date.now() < deadline) await sleep(20);
      if (!this.exited) this.child.kill("SIGKILL");
    }
    if (process.env.KEEP_DIR === "1") console.log(`kept ejabberd's directory ${this.dir}`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// The component under test, as a child process; its stdout lines are kept.

class Baseline {
  constructor(server, names) {
    this.lines = [];
    this.child = spawn(process.execPath, [path.join(__dirname, "component.js")], {
      env: {
        ...process.env,
        XMPP_HOST: "127.0.0.1",
        XMPP_PORT: String(server.componentPort),
        XMPP_DOMAIN: COMPONENT_DOMAIN,
        XMPP_SECRET: server.secret,
        AMQP_URL,
        JOBS_QUEUE: names.jobs,
        EVENTS_EXCHANGE: names.events,
        DEAD_LETTER_QUEUE: names.dead,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exitCode = null;
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code, signal) => {
        this.exitCode = code ?? signal;
        resolve(this.exitCode);
      }),
    );
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => this.lines.push(line));
    readline.createInterface({ input: this.child.stderr }).on("line", (line) => this.lines.push(`[stderr] ${line}`));
  }

  lastPresence() {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const m = /baseline presence users=(\d+) resources=(\d+)/.exec(this.lines[i]);
      if (m) return { users: Number(m[1]), resources: Number(m[2]) };
    }
    return null;
  }

  async waitPresence(users, resources, timeoutMs = 15_000) {
    await waitFor(
      `presence users=${users} resources=${resources}`,
      () => {
        const p = this.lastPresence();
        return p && p.users === users && p.resources === resources;
      },
      timeoutMs,
    );
  }

  async stop() {
    if (this.exitCode === null) this.child.kill("SIGTERM");
    return Promise.race([this.exited, sleep(10_000).then(() => "timeout")]);
  }
}

// ---------------------------------------------------------------------------
// c2s users.

async function login(server, user, presence, counters) {
  const xmppClient = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: DOMAIN,
    resource: "check",
    // PLAIN when offered: SCRAM makes Prosody (internal_plain) derive the
    // salted password on every login, which is what a login costs then.
    credentials: (authenticate, mechanisms) =>
      authenticate(
        { username: user, password: server.password(user) },
        mechanisms.includes("PLAIN") ? "PLAIN" : mechanisms[0],
      ),
  });
  xmppClient.reconnect.stop();
  xmppClient.received = [];
  xmppClient.on("error", () => {});
  xmppClient.on("stanza", (stanza) => {
    if (stanza.is("message") && stanza.getChildText("body") !== null) {
      if (counters) counters.arrived += 1;
      else xmppClient.received.push(stanza);
    }
  });
  await xmppClient.start();
  await xmppClient.send(presence);
  return xmppClient;
}

// ---------------------------------------------------------------------------
// AMQP: unique names per run, a report queue bound to the events exchange.

async function openBroker() {
  const tag = crypto.randomBytes(6).toString("hex");
  const names = {
    jobs: `baseline-check-${tag}.jobs`,
    dead: `baseline-check-${tag}.dead`,
    events: `baseline-check-${tag}.events`,
  };
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertQueue(names.jobs, { durable: true });
  await channel.assertQueue(names.dead, { durable: true });
  await channel.assertExchange(names.events, "topic", { durable: true });
  const { queue: reportQueue } = await channel.assertQueue("", { exclusive: true, autoDelete: true });
  await channel.bindQueue(reportQueue, names.events, "job.report");
  const reports = new Map();
  await channel.consume(reportQueue, (msg) => reports.set(JSON.parse(msg.content).id, JSON.parse(msg.content)), {
    noAck: true,
  });
  const deadLetters = [];
  await channel.consume(names.dead, (msg) => deadLetters.push(msg), { noAck: true });
  const publish = (job) =>
    channel.sendToQueue(names.jobs, Buffer.from(typeof job === "string" ? job : JSON.stringify(job)), {
      contentType: "application/json",
      persistent: true,
    });
  const close = async () => {
    await channel.deleteQueue(names.jobs).catch(() => {});
    await channel.deleteQueue(names.dead).catch(() => {});
    await channel.deleteExchange(names.events).catch(() => {});
    await connection.close().catch(() => {});
  };
  return { names, reports, deadLetters, publish, close, channel };
}

// ---------------------------------------------------------------------------
// The behaviour check.

let passed = 0;
let failed = 0;
function check(what, condition, detail) {
  if (condition) {
    passed += 1;
    console.log(`ok - ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  }
}

function sameReport(actual, expected) {
  return JSON.stringify(actual) === JSON.stringify(expected);
}

async function behaviour(server, broker, baseline) {
  await waitFor("baseline ready", () => baseline.lines.some((l) => l.includes("baseline ready")));
  check("prints `baseline ready`", true);

  const alice = await login(server, "alice", xml("presence"));
  const bob = await login(server, "bob", xml("presence", {}, xml("show", {}, "away")));
  const carol = await login(server, "carol", xml("presence", {}, xml("priority", {}, "-1")));
  // dave is provisioned but never logs in.
  await baseline.waitPresence(3, 3);
  check("presence book settles at users=3 resources=3", true);

  const job1 = {
    id: "check-available",
    to: [
      "alice@localhost",
      "Alice@LOCALHOST",
      "bob@localhost",
      "carol@localhost",
      "dave@localhost",
      "alice@localhost/phone",
      "alice@localhost/phone",
      "x@broadcast.localhost",
      "localhost",
      "not a jid",
    ],
    body: "Database <primary> & replica unreachable",
    subject: "Incident 4711",
  };
  broker.publish(job1);
  const report1 = await waitFor("report of job 1", () => broker.reports.get(job1.id));
  const expected1 = {
    id: job1.id,
    recipients: 8,
    sent: 1,
    skipped: { offline: 1, unavailable: 2, invalid: 4 },
  };
  check("job 1 report (policy available)", sameReport(report1, expected1), report1);
  await waitFor("alice's message", () => alice.received.length >= 1);
  const m = alice.received[0];
  check(
    "alice gets the message from herald@broadcast.localhost, type chat, with subject and body",
    m.attrs.from === "herald@broadcast.localhost" &&
      m.attrs.type === "chat" &&
      m.getChildText("subject") === job1.subject &&
      m.getChildText("body") === job1.body,
    m.toString(),
  );

  const job2 = {
    id: "check-online",
    to: ["bob@localhost", "carol@localhost", "alice@localhost"],
    body: "second",
    type: "normal",
    from: "Alerts",
    policy: "online",
  };
  broker.publish(job2);
  const report2 = await waitFor("report of job 2", () => broker.reports.get(job2.id));
  const expected2 = { id: job2.id, recipients: 3, sent: 2, skipped: { offline: 0, unavailable: 1, invalid: 0 } };
  check("job 2 report (policy online, carol has priority -1)", sameReport(report2, expected2), report2);
  await waitFor("bob's message", () => bob.received.length >= 1);
  await waitFor("alice's second message", () => alice.received.length >= 2);
  check(
    "bob (away) gets the online-policy message from alerts@broadcast.localhost, type normal",
    bob.received[0].attrs.from === "alerts@broadcast.localhost" &&
      // ejabberd leaves out type="normal", the default.
      (bob.received[0].attrs.type ?? "normal") === "normal" &&
      bob.received[0].getChildText("body") === "second" &&
      bob.received[0].getChildText("subject") === null,
    bob.received[0].toString(),
  );

  broker.publish("this is not json");
  broker.publish({ id: "check-no-body", to: ["alice@localhost"] });
  await waitFor("two dead letters", () => broker.deadLetters.length >= 2);
  const errors = broker.deadLetters.map((d) => d.properties.headers && d.properties.headers["x-herald-error"]);
  check(
    "bad jobs are dead-lettered with x-herald-error",
    errors.length === 2 &&
      typeof errors[0] === "string" &&
      errors[0].startsWith("not a valid job:") &&
      errors[1] === "not a valid job: missing field `body`" &&
      broker.deadLetters[0].content.toString() === "this is not json",
    errors,
  );
  check("no report for dead-lettered jobs", !broker.reports.has("check-no-body"));

  await bob.stop();
  await baseline.waitPresence(2, 2);
  check("bob's logout is seen (users=2 resources=2)", true);

  // Let any stray stanza arrive before counting: carol must have got nothing.
  await sleep(300);
  check("carol (priority -1) got nothing", carol.received.length === 0, carol.received.length);
  check("alice got exactly two messages", alice.received.length === 2, alice.received.length);
  await alice.stop();
  await carol.stop();

  const code = await baseline.stop();
  check("exits 0 on SIGTERM", code === 0, code);
  const { messageCount, consumerCount } = await broker.channel.checkQueue(broker.names.jobs);
  check("all jobs were acknowledged", messageCount === 0 && consumerCount === 0, { messageCount, consumerCount });
}

// ---------------------------------------------------------------------------
// The rough benchmark: the same number of messages as one fan-out per round
// (a job to every user) and as one job per message.

async function bench(server, broker, baseline, users, rounds) {
  await waitFor("baseline ready", () => baseline.lines.some((l) => l.includes("baseline ready")));
  const counters = { arrived: 0 };
  const clients = [];
  for (let i = 0; i < users.length; i += 50) {
    const batch = users.slice(i, i + 50).map((u) => login(server, u, xml("presence"), counters));
    clients.push(...(await Promise.all(batch)));
  }
  await baseline.waitPresence(users.length, users.length, 60_000);
  const to = users.map((u) => `${u}@${DOMAIN}`);
  const total = users.length * rounds;

  async function run(name, jobs) {
    counters.arrived = 0;
    broker.reports.clear();
    const start = process.hrtime.bigint();
    for (const job of jobs) broker.publish(job);
    await waitFor(`${name}: ${total} messages`, () => counters.arrived >= total, 120_000);
    const delivered = Number(process.hrtime.bigint() - start) / 1e9;
    await waitFor(`${name}: ${jobs.length} reports`, () => broker.reports.size >= jobs.length, 120_000);
    const reported = Number(process.hrtime.bigint() - start) / 1e9;
    const sent = [...broker.reports.values()].reduce((n, r) => n + r.sent, 0);
    console.log(
      `${name}: ${jobs.length} jobs, ${total} messages arrived in ${delivered.toFixed(2)} s ` +
        `(${Math.round(total / delivered)} msg/s), all reports in ${reported.toFixed(2)} s, sent=${sent}`,
    );
    await sleep(500);
    if (counters.arrived !== total) console.log(`${name}: ${counters.arrived - total} extra messages arrived`);
  }

  const fanout = [];
  for (let r = 0; r < rounds; r++) fanout.push({ id: `fanout-${r}`, to, body: `fan-out round ${r}` });
  await run(`fan-out (${rounds} jobs x ${users.length} recipients)`, fanout);

  const single = [];
  for (let r = 0; r < rounds; r++) {
    for (const recipient of to) single.push({ id: `single-${r}-${recipient}`, to: [recipient], body: `single ${r}` });
  }
  await run(`single (${total} jobs x 1 recipient)`, single);

  await Promise.all(clients.map((c) => c.stop().catch(() => {})));
  const code = await baseline.stop();
  console.log(`baseline exit code ${code}`);
}

// ---------------------------------------------------------------------------

async function main() {
  ({ client, xml } = await import("@xmpp/client"));
  const benchMode = process.argv.includes("--bench");
  const benchUsers = Number(process.env.BENCH_USERS || 200);
  const rounds = Number(process.env.BENCH_ROUNDS || 25);
  const users = benchMode
    ? Array.from({ length: benchUsers }, (_, i) => `user${i}`)
    : ["alice", "bob", "carol", "dave"];

  const serverName = process.env.XMPP_SERVER || "prosody";
  if (serverName !== "prosody" && serverName !== "ejabberd") {
    console.error("XMPP_SERVER must be prosody or ejabberd");
    process.exit(2);
  }
  const server = serverName === "ejabberd" ? new Ejabberd(users) : new Prosody(users);
  console.log(`server: ${serverName}`);
  let broker = null;
  let baseline = null;
  const timer = setTimeout(() => {
    console.log("FAIL - the check did not finish in time");
    if (baseline) baseline.child.kill("SIGKILL");
    if (server.child) server.child.kill("SIGKILL");
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  try {
    await server.start();
    broker = await openBroker();
    baseline = new Baseline(server, broker.names);
    if (benchMode) await bench(server, broker, baseline, users, rounds);
    else await behaviour(server, broker, baseline);
  } catch (err) {
    failed += 1;
    console.log(`FAIL - ${err.message}`);
    if (baseline) console.log("--- component output ---\n" + baseline.lines.slice(-30).join("\n"));
  } finally {
    if (baseline) await baseline.stop();
    if (broker) await broker.close();
    await server.stop();
    clearTimeout(timer);
  }
  if (!benchMode || failed > 0) console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
