// The scenarios with kafkajs: `node kafkajs.js SCENARIO BOOTSTRAP` prints one line
// `COMPAT-RESULT {"status": "pass"|"fail"|"na", "detail": "..."}`.
// kafkajs comes from compat/work/node_modules (tools/setup-compat-env.sh), found via NODE_PATH.
'use strict';

const crypto = require('crypto');
const { Kafka, logLevel, CompressionTypes, CompressionCodecs, PartitionAssigners } = require('kafkajs');

let codecs = {};
try { CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy'); codecs.snappy = true; } catch (e) { /* optional */ }
try {
  const LZ4 = require('kafkajs-lz4');
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec;
  codecs.lz4 = true;
} catch (e) { /* optional */ }

class NotSupported extends Error {}
class CheckFailed extends Error {}

const CLIENT = 'kafkajs';
const [, , SCENARIO, BOOTSTRAP] = process.argv;
const kafka = new Kafka({ clientId: 'kbroker-compat', brokers: [BOOTSTRAP], logLevel: logLevel.NOTHING,
  retry: { retries: 3, initialRetryTime: 100 }, requestTimeout: 15000, connectionTimeout: 5000 });

const rnd = () => crypto.randomBytes(4).toString('hex');
const topicName = (s) => `compat-${CLIENT}-${s}-${rnd()}`.replace(/_/g, '-');
const groupName = (s) => `compat-g-${CLIENT}-${s}-${rnd()}`;
const payloads = (n, p = 'm') => Array.from({ length: n }, (_, i) => `${p}-${String(i).padStart(5, '0')}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(cond, msg) { if (!cond) throw new CheckFailed(msg); }

async function waitUntil(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new CheckFailed(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try { return await fn(admin); } finally { await admin.disconnect(); }
}

async function newTopic(scenario, partitions = 1, configEntries = []) {
  const topic = topicName(scenario);
  await withAdmin(async (a) => {
    const ok = await a.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }], waitForLeaders: true });
    check(ok, 'createTopics returned false');
  });
  return topic;
}

async function produce(topic, messages, opts = {}) {
  const producer = kafka.producer(opts.producer || {});
  await producer.connect();
  try {
    return await producer.send({ topic, messages, acks: opts.acks === undefined ? -1 : opts.acks, compression: opts.compression });
  } finally { await producer.disconnect(); }
}

// Read `n` messages from the start of `partitions` (all of them by default) without a group.
async function readAll(topic, n, opts = {}) {
  const consumer = kafka.consumer({ maxWaitTimeInMs: 500, groupId: groupName('read'), readUncommitted: !opts.readCommitted,
    maxBytes: opts.maxBytes, maxBytesPerPartition: opts.maxBytes });
  const out = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachMessage: async ({ partition, message }) => { out.push({ partition, ...message }); } });
    await waitUntil(() => out.length >= n, opts.timeout || 20000, `${n} records (have ${out.length})`);
    return out;
  } finally { await consumer.disconnect(); }
}
const str = (b) => (b === null ? null : b.toString());
const sameJson = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function txnProducer(transactionalId) {
  return kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30000 });
}

// The LSO of every partition: kafkajs's admin lists offsets with isolation READ_COMMITTED.
async function lsoOf(topic) {
  return withAdmin(async (a) => {
    const out = {};
    for (const p of await a.fetchTopicOffsets(topic)) out[p.partition] = Number(p.offset);
    return out;
  });
}

// Every message of `topics` from the start (a fresh group, read_uncommitted unless
// opts.readCommitted) until `n` have come, then opts.settleMs (1 s) more in which nothing else
// may arrive; also the high watermark of each partition's last fetch ("topic:partition").
async function drain(topics, n, opts = {}) {
  const consumer = kafka.consumer({ maxWaitTimeInMs: 200, groupId: groupName('drain'), readUncommitted: !opts.readCommitted });
  const msgs = [];
  const hw = {};
  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        hw[`${batch.topic}:${batch.partition}`] = Number(batch.highWatermark);
        for (const m of batch.messages) msgs.push({ topic: batch.topic, partition: batch.partition, offset: Number(m.offset), value: str(m.value) });
      },
    });
    await waitUntil(() => msgs.length >= n, opts.timeout || 20000, `${n} records (have ${msgs.length})`);
    await sleep(opts.settleMs === undefined ? 1000 : opts.settleMs);
    return { msgs, hw };
  } finally { await consumer.disconnect(); }
}

// Values per "topic:partition", partitions in order, values in offset order.
function byPartition(msgs) {
  const out = {};
  for (const m of [...msgs].sort((x, y) => (x.topic + x.partition).localeCompare(y.topic + y.partition) || x.offset - y.offset)) {
    (out[`${m.topic}:${m.partition}`] = out[`${m.topic}:${m.partition}`] || []).push(m.value);
  }
  return out;
}

const scenarios = {
  async metadata() {
    const topic = await newTopic('metadata', 3);
    await withAdmin(async (a) => {
      const md = await a.fetchTopicMetadata({ topics: [topic] });
      const parts = md.topics[0].partitions.map((p) => p.partitionId).sort();
      check(JSON.stringify(parts) === '[0,1,2]', `partitions ${parts}`);
      const cluster = await a.describeCluster();
      const [host, port] = BOOTSTRAP.split(':');
      check(cluster.brokers.some((b) => b.host === host && b.port === Number(port)), `brokers ${JSON.stringify(cluster.brokers)}`);
      check(md.topics[0].partitions.every((p) => cluster.brokers.some((b) => b.nodeId === p.leader)), 'partition without a known leader');
    });
  },
  async produce_acks0() { await acks(0, 'acks0'); },
  async produce_acks1() { await acks(1, 'acks1'); },
  async produce_acksall() { await acks(-1, 'acksall'); },
  async keys_partitioner() {
    const topic = await newTopic('keys', 6);
    const msgs = Array.from({ length: 60 }, (_, i) => ({ key: `key-${i % 12}`, value: `v${i}` }));
    const res = await produce(topic, msgs);
    check(res.length > 1, 'all keys in one partition');
    const got = await readAll(topic, 60);
    const where = {};
    for (const m of got) (where[str(m.key)] = where[str(m.key)] || new Set()).add(m.partition);
    check(Object.keys(where).length === 12 && Object.values(where).every((s) => s.size === 1), 'a key is in several partitions');
    check(new Set(got.map((m) => m.partition)).size > 1, 'all keys in one partition');
  },
  async headers() {
    const topic = await newTopic('headers');
    // kafkajs headers are an object: a repeated key is given as an array of values.
    await produce(topic, [{ value: 'with-headers', headers: { h1: ['v1', 'dup'], h2: '' } }]);
    const [m] = await readAll(topic, 1);
    const h = m.headers;
    const h1 = Array.isArray(h.h1) ? h.h1.map(str) : [str(h.h1)];
    check(JSON.stringify(h1) === '["v1","dup"]' && str(h.h2) === '', `headers ${JSON.stringify(h)}`);
  },
  async null_values() {
    const topic = await newTopic('null');
    await produce(topic, [{ key: 'k1', value: null }, { key: 'k2', value: '' }]);
    const got = await readAll(topic, 2);
    check(got[0].value === null && str(got[0].key) === 'k1', `tombstone read as ${got[0].value}`);
    check(got[1].value !== null && str(got[1].value) === '' && str(got[1].key) === 'k2', `empty value read as ${got[1].value}`);
  },
  async compression_gzip() { await compression(CompressionTypes.GZIP, 'gzip'); },
  async compression_snappy() {
    if (!codecs.snappy) throw new NotSupported('kafkajs-snappy codec not installed');
    await compression(CompressionTypes.Snappy, 'snappy');
  },
  async compression_lz4() {
    if (!codecs.lz4) throw new NotSupported('kafkajs-lz4 codec not installed');
    await compression(CompressionTypes.LZ4, 'lz4');
  },
  async compression_zstd() {
    throw new NotSupported('kafkajs ships no zstd codec (@kafkajs/zstd needs a native build)');
  },
  async consume_assign() {
    // kafkajs has no manual assignment (consumer.assign); closest is a group consumer + seek.
    throw new NotSupported('kafkajs has no manual partition assignment (group subscription only)');
  },
  async consume_timestamp() {
    const topic = await newTopic('timestamp');
    const t0 = Date.now() - 60000;
    await produce(topic, Array.from({ length: 5 }, (_, i) => ({ value: `t${i}`, timestamp: String(t0 + i * 1000) })));
    const offs = await withAdmin((a) => a.fetchTopicOffsetsByTimestamp(topic, t0 + 1500));
    check(offs.length === 1 && offs[0].offset === '2', `offsets for timestamp ${JSON.stringify(offs)}`);
    const consumer = kafka.consumer({ maxWaitTimeInMs: 500, groupId: groupName('ts') });
    const out = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [topic] });
      await consumer.run({ autoCommit: false, eachMessage: async ({ message }) => { out.push(message); } });
      consumer.seek({ topic, partition: 0, offset: offs[0].offset });
      await waitUntil(() => out.length >= 1, 20000, 'a record');
    } finally { await consumer.disconnect(); }
    check(str(out[0].value) === 't2' && out[0].timestamp === String(t0 + 2000), `first record ${str(out[0].value)} @${out[0].timestamp}`);
  },
  async group_range() { throw new NotSupported('kafkajs ships only the round-robin assignor'); },
  async group_roundrobin() { return group([PartitionAssigners.roundRobin], 'roundrobin'); },
  async group_sticky() { throw new NotSupported('kafkajs ships only the round-robin assignor'); },
  async group_cooperative_sticky() { throw new NotSupported('kafkajs ships only the round-robin assignor (no cooperative rebalancing)'); },
  async commit_resume() {
    const topic = await newTopic('commit');
    const vals = payloads(10);
    await produce(topic, vals.map((value) => ({ value })));
    const groupId = groupName('commit');
    let c = kafka.consumer({ maxWaitTimeInMs: 500, groupId });
    const first = [];
    await c.connect();
    try {
      await c.subscribe({ topics: [topic], fromBeginning: true });
      await c.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async ({ batch }) => {
        for (const m of batch.messages) if (first.length < 4) first.push(m);
      } });
      await waitUntil(() => first.length >= 4, 20000, '4 records');
      await c.commitOffsets([{ topic, partition: 0, offset: '4' }]);
    } finally { await c.disconnect(); }
    const committed = await withAdmin((a) => a.fetchOffsets({ groupId, topics: [topic] }));
    check(committed[0].partitions[0].offset === '4', `committed ${JSON.stringify(committed)}`);
    c = kafka.consumer({ maxWaitTimeInMs: 500, groupId });
    const second = [];
    await c.connect();
    try {
      await c.subscribe({ topics: [topic], fromBeginning: true });
      await c.run({ autoCommit: false, eachMessage: async ({ message }) => { second.push(message); } });
      await waitUntil(() => second.length >= 1, 20000, 'a record after resume');
    } finally { await c.disconnect(); }
    check(second[0].offset === '4' && str(second[0].value) === vals[4], `resumed at offset ${second[0].offset}`);
  },
  async idempotent_producer() {
    const topic = await newTopic('idempotent');
    const vals = payloads(10);
    await produce(topic, vals.map((value) => ({ value })), { producer: { idempotent: true, maxInFlightRequests: 1 } });
    const got = await readAll(topic, 10);
    check(JSON.stringify(got.map((m) => str(m.value))) === JSON.stringify(vals), 'records differ');
  },
  async transactions() {
    const topic = await newTopic('txn');
    const producer = kafka.producer({ transactionalId: `${topic}-tx`, idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      let tx = await producer.transaction();
      await tx.send({ topic, messages: ['c1', 'c2', 'c3'].map((value) => ({ value })) });
      await tx.commit();
      tx = await producer.transaction();
      await tx.send({ topic, messages: ['a1', 'a2'].map((value) => ({ value })) });
      await tx.abort();
      tx = await producer.transaction();
      await tx.send({ topic, messages: [{ value: 'c4' }] });
      await tx.commit();
    } finally { await producer.disconnect(); }
    const got = await readAll(topic, 4, { readCommitted: true });
    await sleep(500);
    check(JSON.stringify(got.map((m) => str(m.value))) === '["c1","c2","c3","c4"]', `read ${got.map((m) => str(m.value))}`);
  },
  async txn_abort_multi() {
    const a = await newTopic('txn-abort-multi-a', 3);
    const b = await newTopic('txn-abort-multi-b', 2);
    const tps = [0, 1, 2].map((p) => [a, p]).concat([0, 1].map((p) => [b, p]));
    const producer = txnProducer(`${a}-tx`);
    await producer.connect();
    try {
      let tx = await producer.transaction();
      await tx.sendBatch({ topicMessages: tps.map(([topic, p]) => ({ topic, messages: [0, 1, 2].map((i) => ({ partition: p, value: `a-${p}-${i}` })) })) });
      await tx.abort();
      tx = await producer.transaction();
      await tx.sendBatch({ topicMessages: tps.map(([topic, p]) => ({ topic, messages: [0, 1].map((i) => ({ partition: p, value: `c-${p}-${i}` })) })) });
      await tx.commit();
    } finally { await producer.disconnect(); }
    const { msgs } = await drain([a, b], 10, { readCommitted: true });
    const want = {};
    for (const [topic, p] of tps) want[`${topic}:${p}`] = [`c-${p}-0`, `c-${p}-1`];
    const got = byPartition(msgs);
    check(sameJson(got, want), `read_committed read ${JSON.stringify(got)}`);
  },
  async txn_read_committed() {
    const topic = await newTopic('txn-read-committed', 2);
    const p1 = txnProducer(`${topic}-tx1`);
    const p2 = txnProducer(`${topic}-tx2`);
    await p1.connect();
    await p2.connect();
    // One record per partition, acknowledged before the next step: the log order is known.
    const send = async (tx, tag) => {
      const res = await tx.send({ topic, messages: [0, 1].map((p) => ({ partition: p, value: `${tag}-${p}` })) });
      const out = {};
      for (const r of res) out[r.partition] = Number(r.baseOffset);
      return out;
    };
    let lsoOpen;
    try {
      let t1 = await p1.transaction();
      const first1 = await send(t1, 'p1-t1-0');
      let t2 = await p2.transaction();
      const first2 = await send(t2, 'p2-t1-0');
      await send(t1, 'p1-t1-1');
      await send(t2, 'p2-t1-1');
      let lso = await lsoOf(topic);
      check(sameJson(lso, first1), `LSO ${JSON.stringify(lso)} with both open, want ${JSON.stringify(first1)}`);
      await t1.commit();
      lsoOpen = await lsoOf(topic);
      check(sameJson(lsoOpen, first2), `LSO ${JSON.stringify(lsoOpen)} after the first commit, want ${JSON.stringify(first2)}`);
      const { msgs } = await drain([topic], 2, { readCommitted: true });
      const below = byPartition(msgs);
      check(sameJson(below, { [`${topic}:0`]: ['p1-t1-0-0'], [`${topic}:1`]: ['p1-t1-0-1'] }), `below the LSO read ${JSON.stringify(below)}`);
      await t2.abort();
      t2 = await p2.transaction();
      await send(t2, 'p2-t2-0');
      t1 = await p1.transaction();
      await send(t1, 'p1-t2-0');
      await t2.commit();
      await t1.abort();
    } finally {
      await p1.disconnect();
      await p2.disconnect();
    }
    const { msgs, hw } = await drain([topic], 6, { readCommitted: true });
    const got = byPartition(msgs);
    const want = {};
    for (const p of [0, 1]) want[`${topic}:${p}`] = ['p1-t1-0', 'p1-t1-1', 'p2-t2-0'].map((t) => `${t}-${p}`);
    check(sameJson(got, want), `read_committed read ${JSON.stringify(got)}`);
    const lso = await lsoOf(topic);
    const hwm = { 0: hw[`${topic}:0`], 1: hw[`${topic}:1`] };
    check(sameJson(lso, hwm), `final LSO ${JSON.stringify(lso)} != high watermark ${JSON.stringify(hwm)}`);
    return `LSO ${JSON.stringify(lsoOpen)} while a transaction was open, ${JSON.stringify(hwm)} at the end`;
  },
  async txn_read_uncommitted() {
    const topic = await newTopic('txn-read-uncommitted', 1);
    const producer = txnProducer(`${topic}-tx`);
    const sent = [];
    const send = async (tx, value) => {
      const [r] = await tx.send({ topic, messages: [{ partition: 0, value }] });
      sent.push([Number(r.baseOffset), value]);
    };
    await producer.connect();
    try {
      let tx = await producer.transaction();
      await send(tx, 'u-c1');
      await send(tx, 'u-c2');
      await tx.commit();
      tx = await producer.transaction();
      await send(tx, 'u-a1');
      await send(tx, 'u-a2');
      await tx.abort();
      tx = await producer.transaction();
      await send(tx, 'u-o1');
      let { msgs, hw } = await drain([topic], sent.length);
      let got = msgs.map((m) => [m.offset, m.value]);
      check(sameJson(got, sent), `read ${JSON.stringify(got)}, sent ${JSON.stringify(sent)}`);
      const last = sent[sent.length - 1][0];
      check(hw[`${topic}:0`] === last + 1, `high watermark ${hw[`${topic}:0`]} with a transaction open, want ${last + 1}`);
      await tx.commit();
      ({ msgs, hw } = await drain([topic], sent.length));
      got = msgs.map((m) => [m.offset, m.value]);
      check(sameJson(got, sent), `read ${JSON.stringify(got)}, sent ${JSON.stringify(sent)}`);
      check(hw[`${topic}:0`] === last + 2, `high watermark ${hw[`${topic}:0`]} after the commit, want ${last + 2}`);
    } finally { await producer.disconnect(); }
  },
  async txn_send_offsets() {
    const src = await newTopic('txn-send-offsets-in', 1);
    const dst = await newTopic('txn-send-offsets-out', 1);
    const vals = payloads(10, 'in');
    await produce(src, vals.map((value) => ({ value })));
    const group = groupName('txn-send-offsets');
    // kafkajs's sendOffsets takes a group id (no member/generation checks).
    const recs = (await drain([src], 10, { readCommitted: true, settleMs: 0 })).msgs;
    check(sameJson(recs.map((m) => m.value), vals), `consumed ${recs.length} of 10 input records`);
    const committed = () => withAdmin(async (adm) => {
      const [t] = await adm.fetchOffsets({ groupId: group, topics: [src] });
      return Number(t.partitions.find((p) => p.partition === 0).offset);
    });
    const producer = txnProducer(`${dst}-tx`);
    await producer.connect();
    try {
      const txn = async (lo, hi, commit) => {
        const tx = await producer.transaction();
        await tx.send({ topic: dst, messages: recs.slice(lo, hi).map((m) => ({ partition: 0, value: `out-${m.value}` })) });
        await tx.sendOffsets({ consumerGroupId: group, topics: [{ topic: src, partitions: [{ partition: 0, offset: String(hi) }] }] });
        const before = await committed();
        if (commit) await tx.commit(); else await tx.abort();
        return before;
      };
      let before = await txn(0, 4, true);
      check(before < 0, `offset ${before} visible before the first transaction committed`);
      let now = await committed();
      check(now === 4, `committed offset ${now} after the commit, want 4`);
      before = await txn(4, 7, false);
      check(before === 4, `committed offset ${before} during the second transaction, want 4`);
      now = await committed();
      check(now === 4, `committed offset ${now} after the abort, want 4`);
      before = await txn(4, 10, true);
      check(before === 4, `committed offset ${before} during the third transaction, want 4`);
      now = await committed();
      check(now === 10, `committed offset ${now} after the commit, want 10`);
    } finally { await producer.disconnect(); }
    const { msgs } = await drain([dst], 10, { readCommitted: true });
    check(sameJson(msgs.map((m) => m.value), vals.map((v) => `out-${v}`)), `output ${msgs.map((m) => m.value)}`);
  },
  async admin_topics() {
    await withAdmin(async (a) => {
      const topic = topicName('admin-topics');
      await a.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
      check((await a.listTopics()).includes(topic), 'created topic not listed');
      await a.deleteTopics({ topics: [topic], timeout: 10000 });
      await waitUntil(async () => !(await a.listTopics()).includes(topic), 10000, 'deleted topic to disappear');
    });
  },
  async admin_partitions() {
    const topic = await newTopic('admin-partitions', 1);
    await withAdmin(async (a) => {
      await a.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
      // Kafka's brokers may learn of the new partitions a moment after the controller answered.
      await waitUntil(async () => (await a.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length === 3,
        10000, 'three partitions after create');
    });
    await produce(topic, [{ value: 'p2', partition: 2 }]);
  },
  async admin_configs() {
    const topic = await newTopic('admin-configs', 1, [{ name: 'retention.ms', value: '3600000' }]);
    const { ConfigResourceTypes } = require('kafkajs');
    await withAdmin(async (a) => {
      const get = async (type, name, key) => {
        const r = await a.describeConfigs({ resources: [{ type, name, configNames: [key] }], includeSynonyms: false });
        const e = r.resources[0].configEntries.find((c) => c.configName === key);
        check(e, `${key} not described`);
        return e.configValue;
      };
      let v = await get(ConfigResourceTypes.TOPIC, topic, 'retention.ms');
      check(v === '3600000', `retention.ms = ${v}`);
      await a.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '12345' }] }] });
      v = await get(ConfigResourceTypes.TOPIC, topic, 'retention.ms');
      check(v === '12345', `after alter retention.ms = ${v}`);
      await get(ConfigResourceTypes.BROKER, '1', 'num.partitions');
    });
  },
  async admin_groups() {
    const topic = await newTopic('admin-groups');
    await produce(topic, [{ value: 'x' }]);
    const groupId = groupName('admin-groups');
    const c = kafka.consumer({ maxWaitTimeInMs: 500, groupId });
    let n = 0;
    await c.connect();
    try {
      await c.subscribe({ topics: [topic], fromBeginning: true });
      await c.run({ eachMessage: async () => { n += 1; } });
      await waitUntil(() => n >= 1, 20000, 'a record in the group consumer');
    } finally { await c.disconnect(); }
    await withAdmin(async (a) => {
      const ids = async () => (await a.listGroups()).groups.map((g) => g.groupId);
      check((await ids()).includes(groupId), 'group not listed');
      const d = await a.describeGroups([groupId]);
      check(d.groups[0].state === 'Empty', `described state ${d.groups[0].state}`);
      await a.deleteGroups([groupId]);
      await waitUntil(async () => !(await ids()).includes(groupId), 10000, 'deleted group to disappear');
    });
  },
  async large_messages() {
    const topic = await newTopic('large');
    const big = crypto.randomBytes(1000000);
    await produce(topic, [{ value: big }]);
    const [m] = await readAll(topic, 1, { maxBytes: 4 * 1024 * 1024 });
    check(Buffer.compare(m.value, big) === 0, 'large value differs');
    try {
      await produce(topic, [{ value: crypto.randomBytes(1100000) }], { producer: { retry: { retries: 0 } } });
    } catch (e) {
      const t = `${e.type || ''} ${e.message} ${(e.originalError && e.originalError.type) || ''}`;
      check(/TOO_LARGE|too large/i.test(t), `rejected with ${t}`);
      return;
    }
    throw new CheckFailed('broker accepted a record over max.message.bytes');
  },
  async many_partitions() {
    const topic = await newTopic('many', 64);
    await produce(topic, Array.from({ length: 64 }, (_, i) => ({ value: `p${i}`, partition: i })));
    const got = await readAll(topic, 64, { timeout: 30000 });
    const pairs = got.map((m) => `${m.partition}:${str(m.value)}`).sort();
    const want = Array.from({ length: 64 }, (_, i) => `${i}:p${i}`).sort();
    check(JSON.stringify(pairs) === JSON.stringify(want), 'records differ');
  },
};

async function acks(a, s) {
  const topic = await newTopic(s);
  const vals = payloads(20);
  await produce(topic, vals.map((value) => ({ value })), { acks: a });
  const got = await readAll(topic, 20);
  check(JSON.stringify(got.map((m) => str(m.value))) === JSON.stringify(vals), 'records differ from what was produced');
}

async function compression(type, name) {
  const topic = await newTopic(`compression-${name}`);
  const vals = payloads(50).map((v) => v.repeat(20));
  await produce(topic, vals.map((value) => ({ value })), { compression: type });
  const got = await readAll(topic, 50);
  check(JSON.stringify(got.map((m) => str(m.value))) === JSON.stringify(vals), 'records differ');
}

async function group(assigners, s) {
  const topic = await newTopic(s, 4);
  await produce(topic, payloads(40).map((value, i) => ({ key: String(i), value })));
  const groupId = groupName(s);
  const seen = new Set();
  const assigned = [new Set(), new Set()];
  const cs = [0, 1].map(() => kafka.consumer({ maxWaitTimeInMs: 500, groupId, partitionAssigners: assigners, sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 10000 }));
  try {
    for (const [i, c] of cs.entries()) {
      c.on(c.events.GROUP_JOIN, (e) => { assigned[i] = new Set((e.payload.memberAssignment[topic] || [])); });
      await c.connect();
      await c.subscribe({ topics: [topic], fromBeginning: true });
      await c.run({ autoCommit: false, eachMessage: async ({ message }) => { seen.add(str(message.value)); } });
      await sleep(300);
    }
    await waitUntil(() => {
      const [a, b] = assigned;
      const union = new Set([...a, ...b]);
      return a.size && b.size && [...a].every((p) => !b.has(p)) && union.size === 4 && seen.size === 40;
    }, 45000, 'a balanced 2-member group that consumed all 40 records');
    return `assignment [${[...assigned[0]].sort()}] / [${[...assigned[1]].sort()}]`;
  } finally {
    for (const c of cs) await c.disconnect();
  }
}

// ---------------------------------------------------------------- security
// compat/security.py's broker: the listeners, certificates and credentials come from COMPAT_SEC_*.

function sec(name) {
  const v = process.env[`COMPAT_SEC_${name}`];
  if (!v) throw new CheckFailed(`COMPAT_SEC_${name} not set: security scenarios run against compat/security.py's broker`);
  return v;
}

// How to connect to `listener` (SASL_PLAINTEXT, SSL, MTLS, SASL_SSL): SASL as user/password with
// `mechanism`; MTLS with the client certificate `cert` ('client', 'untrusted' or null for none).
function secLogin(listener, mechanism, { user, password, cert = 'client', tokenLifetime = 3600 } = {}) {
  const fs = require('fs');
  const protocol = listener === 'MTLS' ? 'SSL' : listener;
  const lg = { listener, protocol, mechanism, bootstrap: sec(listener) };
  if (mechanism === 'OAUTHBEARER') {
    const subject = user || sec('USER');
    lg.sasl = { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: unsecuredJws(subject, tokenLifetime) }) };
  } else if (protocol.startsWith('SASL_')) {
    lg.sasl = { mechanism: mechanism.toLowerCase(), username: user || sec('USER'), password: password || sec('PASSWORD') };
  }
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    lg.ssl = { ca: [fs.readFileSync(sec('CA'), 'utf8')] };
    if (listener === 'MTLS' && cert) {
      lg.ssl.cert = fs.readFileSync(sec(`${cert.toUpperCase()}_CERT`), 'utf8');
      lg.ssl.key = fs.readFileSync(sec(`${cert.toUpperCase()}_KEY`), 'utf8');
    }
  }
  return lg;
}

// An unsecured JWS (alg none, empty signature) for `subject`, as Kafka's unsecured validator accepts.
function unsecuredJws(subject, lifetimeS = 3600) {
  const part = (doc) => Buffer.from(JSON.stringify(doc)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const iat = Math.min(now, now + lifetimeS - 60);
  return `${part({ alg: 'none' })}.${part({ sub: subject, iat, exp: now + lifetimeS })}.`;
}

function secKafka(lg, retries = 3) {
  return new Kafka({ clientId: 'kbroker-compat', brokers: [lg.bootstrap], logLevel: logLevel.NOTHING, ssl: lg.ssl,
    sasl: lg.sasl, retry: { retries, initialRetryTime: 100 }, requestTimeout: 15000, connectionTimeout: 5000 });
}

const SEC_ROUNDTRIPS = {
  sec_sasl_plain: ['SASL_PLAINTEXT', 'PLAIN'],
  sec_sasl_scram_sha256: ['SASL_PLAINTEXT', 'SCRAM-SHA-256'],
  sec_sasl_scram_sha512: ['SASL_PLAINTEXT', 'SCRAM-SHA-512'],
  sec_sasl_oauthbearer: ['SASL_PLAINTEXT', 'OAUTHBEARER'],
  sec_ssl: ['SSL', null],
  sec_ssl_client_cert: ['MTLS', null],
  sec_sasl_ssl_plain: ['SASL_SSL', 'PLAIN'],
  sec_sasl_ssl_scram: ['SASL_SSL', 'SCRAM-SHA-512'],
};

// Create a topic over PLAINTEXT; produce over `lg`'s listener and read back there with a group.
async function secRoundtrip(scenario, lg) {
  const topic = await newTopic(scenario, 2);
  const k = secKafka(lg);
  const values = payloads(10, 'sec');
  const producer = k.producer();
  await producer.connect();
  try {
    const res = await producer.send({ topic, messages: values.map((value) => ({ value })), acks: -1 });
    check(res.every((r) => r.errorCode === 0), `produce errors ${JSON.stringify(res)}`);
  } finally { await producer.disconnect(); }
  const consumer = k.consumer({ groupId: groupName(scenario), maxWaitTimeInMs: 500 });
  const got = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachMessage: async ({ message }) => { got.push(str(message.value)); } });
    await waitUntil(() => got.length >= 10, 20000, `10 records (have ${got.length})`);
  } finally { await consumer.disconnect(); }
  check(sameJson(got.sort(), values), 'records read back differ');
  return `10 records over ${lg.protocol}${lg.mechanism ? '/' + lg.mechanism : ''}`;
}

function secRefusals(scenario) {
  if (scenario === 'sec_wrong_password') {
    return [[['PLAIN with a wrong password', secLogin('SASL_PLAINTEXT', 'PLAIN', { password: sec('WRONG_PASSWORD') })],
      ['SCRAM-SHA-256 with a wrong password', secLogin('SASL_PLAINTEXT', 'SCRAM-SHA-256', { password: sec('WRONG_PASSWORD') })]],
    secLogin('SASL_PLAINTEXT', 'PLAIN')];
  }
  if (scenario === 'sec_unknown_user') {
    return [[['PLAIN as an unknown user', secLogin('SASL_PLAINTEXT', 'PLAIN', { user: sec('UNKNOWN_USER') })],
      ['SCRAM-SHA-512 as an unknown user', secLogin('SASL_PLAINTEXT', 'SCRAM-SHA-512', { user: sec('UNKNOWN_USER') })]],
    secLogin('SASL_PLAINTEXT', 'SCRAM-SHA-512')];
  }
  if (scenario === 'sec_oauthbearer_expired') {
    return [[['an OAUTHBEARER token expired 10 minutes ago', secLogin('SASL_PLAINTEXT', 'OAUTHBEARER', { tokenLifetime: -600 })]],
      secLogin('SASL_PLAINTEXT', 'OAUTHBEARER')];
  }
  return [[['a certificate from an untrusted CA', secLogin('MTLS', null, { cert: 'untrusted' })],
    ['no client certificate', secLogin('MTLS', null, { cert: null })]],
  secLogin('MTLS', null)];
}

// Each refused login must fail on connect: SASL with kafkajs' authentication error (the broker's
// SaslAuthenticate answer), TLS with a connection error naming the handshake (or, TLS 1.3, the
// broker's alert on the first read); then the right login works on the same listener.
async function secRefused(scenario) {
  const [bad, good] = secRefusals(scenario);
  const notes = [];
  const topic = scenario === 'sec_oauthbearer_expired' ? await newTopic(scenario) : null;
  for (const [label, lg] of bad) {
    const producer = secKafka(lg, 0).producer();
    let err = null;
    try { await producer.connect(); } catch (e) { err = e; }
    if (!err && lg.sasl && lg.sasl.mechanism === 'oauthbearer') {
      // kafkajs takes the broker's invalid_token challenge for a completed login, so connect()
      // succeeds; the broker then ends the connection: the refusal shows when nothing gets in.
      try { await producer.send({ topic, messages: [{ value: 'refused' }], acks: -1 }); } catch (e) { err = e; }
      await producer.disconnect().catch(() => {});
      check(err, `${label}: the broker accepted it`);
      const offsets = await withAdmin((a) => a.fetchTopicOffsets(topic));
      check(offsets.every((o) => o.high === '0'), `${label}: records written ${JSON.stringify(offsets)}`);
      notes.push(`${label}: nothing written; kafkajs reports ${err.name}`);
      continue;
    }
    await producer.disconnect().catch(() => {});
    check(err, `${label}: the broker accepted it`);
    const text = `${err.name}: ${err.message}`;
    const ok = lg.sasl ? err.name === 'KafkaJSSASLAuthenticationError'
      : /KafkaJSConnectionError|KafkaJSNonRetriableError|KafkaJSNumberOfRetriesExceeded/.test(err.name);
    check(ok, `${label}: failed, but not as expected: ${text}`);
    notes.push(`${label}: ${text.slice(0, 90)}`);
  }
  return `${await secRoundtrip(scenario, good)}; refused: ${notes.join('; ')}`;
}

for (const [id, [listener, mechanism]] of Object.entries(SEC_ROUNDTRIPS)) {
  scenarios[id] = () => secRoundtrip(id, secLogin(listener, mechanism));
}
for (const id of ['sec_wrong_password', 'sec_unknown_user', 'sec_oauthbearer_expired', 'sec_untrusted_cert']) {
  scenarios[id] = () => secRefused(id);
}

// The streams_* scenarios exercise the Kafka Streams library (Java); they run in the kafka-streams column.
const STREAMS_NA = 'a Kafka Streams scenario (Java library): it runs in the kafka-streams column';

function report(status, detail) {
  process.stdout.write(`COMPAT-RESULT ${JSON.stringify({ status, detail: String(detail || '').split('\n')[0].slice(0, 300) })}\n`);
}

(async () => {
  const fn = scenarios[SCENARIO];
  if (!fn) {
    report('na', SCENARIO.startsWith('streams_') ? STREAMS_NA : `kafkajs has no implementation of ${SCENARIO}`);
    return;
  }
  try {
    const note = await fn();
    report('pass', note || '');
  } catch (e) {
    if (e instanceof NotSupported) report('na', e.message);
    else { console.error(e && e.stack); report('fail', `${e.name}: ${e.message}`); }
  }
  process.exit(0);
})();
