// The bench's peer: what a team would write instead of using twilio-worker.
// A BullMQ Worker (concurrency CONCURRENCY) whose job checks an opt-out set
// (SISMEMBER) and sends with the official twilio-node SDK's
// client.messages.create, against the simulator at SIM_URL.
//
// The bench (cmd/bench, scenario "peer") installs bullmq, ioredis and twilio
// into a temporary directory and runs this file there. Protocol on stdio:
// the script enqueues N jobs with Queue.addBulk and prints "queued"; on a
// line "go" on stdin it starts the worker and prints
// "done {json}" once N jobs have completed (or failed).
"use strict";
const http = require("node:http");
const readline = require("node:readline");
const { Queue, Worker } = require("bullmq");
const IORedis = require("ioredis");
const twilio = require("twilio");
const RequestClient = require("twilio/lib/base/RequestClient");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(k + " is not set");
  return v;
};
// REDIS_NODES (host:port,…) is a Redis Cluster; else REDIS_HOST and REDIS_PORT
// name one node.
const clusterNodes = (process.env.REDIS_NODES || "").split(",").filter(Boolean).map((a) => {
  const i = a.lastIndexOf(":");
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
});
const onCluster = clusterNodes.length > 0;
const newRedis = (extra) => onCluster
  ? new IORedis.Cluster(clusterNodes, { redisOptions: { ...extra } })
  : new IORedis({ host: env("REDIS_HOST"), port: Number(env("REDIS_PORT")), ...extra });
const simURL = new URL(env("SIM_URL"));
const n = Number(env("N"));
const concurrency = Number(env("CONCURRENCY"));
const from = env("FROM");
const optOutKey = env("OPTOUT_KEY");

// twilio-node has no base-URL option (edge and region only change the
// host name under twilio.com): this request client sends each request to
// the simulator instead, keeping path, auth and body as the SDK made them.
class SimClient extends (RequestClient.default || RequestClient) {
  constructor() {
    super({ keepAlive: true });
    this.axios.defaults.httpAgent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  }
  request(opts) {
    const u = new URL(opts.uri);
    u.protocol = simURL.protocol;
    u.host = simURL.host;
    return super.request({ ...opts, uri: u.href });
  }
}

async function main() {
  // On a cluster, BullMQ's keys need one hash tag: the prefix {bull}.
  const prefix = onCluster ? "{bull}" : "bull";
  const queue = new Queue("sms", { connection: newRedis({ maxRetriesPerRequest: null }), prefix });
  // MESSAGES is a JSON file: [{"to": "+1…", "body": "…"}, …], N of them.
  const messages = JSON.parse(require("node:fs").readFileSync(env("MESSAGES"), "utf8"));
  if (messages.length !== n) throw new Error(`MESSAGES has ${messages.length} messages, want ${n}`);
  const jobs = messages.map((data) => ({ name: "send", data }));
  for (let i = 0; i < jobs.length; i += 1000) {
    await queue.addBulk(jobs.slice(i, i + 1000));
  }
  process.stdout.write("queued\n");

  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.on("line", (l) => { if (l.trim() === "go") resolve(); }));

  const redis = newRedis({});
  const client = twilio(env("ACCOUNT_SID"), env("AUTH_TOKEN"), { httpClient: new SimClient() });
  let completed = 0, failed = 0, optedOut = 0, firstError = "";
  const start = process.hrtime.bigint();
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const worker = new Worker("sms", async (job) => {
    if (await redis.sismember(optOutKey, job.data.to)) {
      optedOut++;
      return { skipped: "opted out" };
    }
    const m = await client.messages.create({ to: job.data.to, from, body: job.data.body });
    return { sid: m.sid };
  }, { connection: newRedis({ maxRetriesPerRequest: null }), prefix, concurrency, autorun: false });
  const settle = () => { if (completed + failed >= n) finish(); };
  worker.on("completed", () => { completed++; settle(); });
  worker.on("failed", (_job, err) => { failed++; if (!firstError) firstError = String(err && err.message); settle(); });
  worker.run();
  await done;
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  process.stdout.write("done " + JSON.stringify({ ms, completed, failed, optedOut, firstError }) + "\n");
  await worker.close();
  await queue.close();
  redis.disconnect();
  rl.close();
}

main().catch((err) => {
  process.stderr.write("peer: " + (err && err.stack || err) + "\n");
  process.exit(1);
});
