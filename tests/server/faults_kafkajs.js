// kafkajs against fault rules set over kbroker's HTTP endpoint:
// `node faults_kafkajs.js BOOTSTRAP FAULTS_URL TOPIC` prints one line `RESULT {...}` (what it saw).
// kafkajs is found through NODE_PATH (compat/work/node_modules).
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const [, , BOOTSTRAP, FAULTS_URL, TOPIC] = process.argv;

async function rule(spec) {
  const r = await fetch(FAULTS_URL, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(spec) });
  const body = await r.json();
  if (r.status !== 201) throw new Error(`rule refused (${r.status}): ${body.error}`);
  return body.id;
}

async function listed() {
  return (await (await fetch(FAULTS_URL)).json()).rules;
}

async function main() {
  const out = {};
  const kafka = new Kafka({ clientId: 'faults-kafkajs', brokers: [BOOTSTRAP], logLevel: logLevel.NOTHING,
    retry: { retries: 5, initialRetryTime: 50, maxRetryTime: 500 }, requestTimeout: 1500 });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  // Retriable: the idempotent producer retries through two refusals.
  const retried = await rule({ api: 'Produce', error: 'NOT_LEADER_OR_FOLLOWER', topic: TOPIC, count: 2 });
  await producer.send({ topic: TOPIC, messages: [{ value: 'a' }, { value: 'b' }] });
  out.retried = (await listed()).find((r) => r.id === retried);
  // Not retriable: the error reaches the application.
  const refused = await rule({ api: 'Produce', error: 'TOPIC_AUTHORIZATION_FAILED', topic: TOPIC });
  try {
    await producer.send({ topic: TOPIC, messages: [{ value: 'never' }] });
    out.refused_error = null;
  } catch (e) {
    out.refused_error = (e.originalError && e.originalError.type) || e.type || String(e);
  }
  out.refused = (await listed()).find((r) => r.id === refused);
  // A response lost after the write: the retry is recognised as a duplicate.
  const dropped = await rule({ api: 'Produce', action: 'drop_response', topic: TOPIC });
  await producer.send({ topic: TOPIC, messages: [{ value: 'c' }], timeout: 1000 });
  out.dropped = (await listed()).find((r) => r.id === dropped);
  await producer.disconnect();

  const removed = await fetch(`${FAULTS_URL}/${retried}`, { method: 'DELETE' });
  out.removed_status = removed.status;
  out.cleared = await (await fetch(FAULTS_URL, { method: 'DELETE' })).json();
  out.left = await listed();
  console.log('RESULT ' + JSON.stringify(out));
}

main().catch((e) => {
  console.log('RESULT ' + JSON.stringify({ failed: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
});
