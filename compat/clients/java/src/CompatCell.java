// The scenarios of the compatibility matrix with the Java client (org.apache.kafka:kafka-clients):
// `java -cp CLASSES:LIB/* CompatCell SCENARIO BOOTSTRAP` runs one scenario of compat/scenarios.py and
// prints one line `COMPAT-RESULT {"status": "pass"|"fail"|"na", "detail": "..."}`. The checks mirror
// the Python clients' (compat/clients/confluent.py): same topics layout, records and assertions.

import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class CompatCell {
    static final String CLIENT = "java";
    static final String PREFIX = "COMPAT-RESULT ";
    /** A value just under the default max.message.bytes (1048588) once batch overhead is added. */
    static final int LARGE_SIZE = 1_000_000;
    /** A value over it: the broker must refuse the batch (MESSAGE_TOO_LARGE). */
    static final int OVERSIZE = 1_100_000;

    /** The client does not offer this feature: the cell is n/a, not a failure. */
    static final class NotSupported extends RuntimeException {
        NotSupported(String msg) { super(msg); }
    }

    /** A check of the scenario did not hold. */
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) { super(msg); }
    }

    final String bootstrap;

    CompatCell(String bootstrap) { this.bootstrap = bootstrap; }

    // ------------------------------------------------------------------ helpers

    static void check(boolean cond, String msg) {
        if (!cond) throw new CheckFailed(msg);
    }

    static String topicName(String scenario) {
        return ("compat-" + CLIENT + "-" + scenario + "-" + UUID.randomUUID().toString().substring(0, 8)).replace('_', '-');
    }

    static String groupName(String scenario) {
        return "compat-g-" + CLIENT + "-" + scenario + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static byte[] b(String s) { return s == null ? null : s.getBytes(StandardCharsets.UTF_8); }

    static String s(byte[] v) { return v == null ? null : new String(v, StandardCharsets.UTF_8); }

    static List<byte[]> payloads(int n) {
        List<byte[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(b(String.format("m-%05d", i)));
        return out;
    }

    static List<String> strs(Collection<byte[]> vals) {
        return vals.stream().map(CompatCell::s).collect(Collectors.toList());
    }

    static <T> T get(Future<T> f) throws Exception {
        try {
            return f.get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            throw e.getCause() instanceof Exception ? (Exception) e.getCause() : e;
        }
    }

    static void waitUntil(BooleanSupplier fn, double seconds, String what) throws InterruptedException {
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        while (!fn.getAsBoolean()) {
            if (System.nanoTime() > deadline) throw new CheckFailed("timed out waiting for " + what);
            Thread.sleep(200);
        }
    }

    Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        return Admin.create(p);
    }

    String newTopic(String scenario, int partitions, Map<String, String> configs) throws Exception {
        String name = topicName(scenario);
        try (Admin a = admin()) {
            get(a.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all());
        }
        return name;
    }

    String newTopic(String scenario, int partitions) throws Exception {
        return newTopic(scenario, partitions, Map.of());
    }

    KafkaProducer<byte[], byte[]> producer(Map<String, Object> conf) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 20000);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
        // kafka-clients enables idempotence by default; each cell tests its own feature, so only
        // idempotent_producer and transactions turn it on (as the kafka-python cells do).
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
        p.putAll(conf);
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    /** One record to produce; null fields are left to the client (partitioner, timestamp). */
    record Rec(byte[] key, byte[] value, Integer partition, Long timestamp, List<Header> headers) {
        static Rec of(byte[] value) { return new Rec(null, value, null, null, null); }
    }

    List<RecordMetadata> produce(String topic, List<Rec> recs, Map<String, Object> conf) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = producer(conf)) {
            List<Future<RecordMetadata>> futs = new ArrayList<>();
            for (Rec r : recs) {
                futs.add(p.send(new ProducerRecord<>(topic, r.partition(), r.timestamp(), r.key(), r.value(), r.headers())));
            }
            p.flush();
            List<RecordMetadata> out = new ArrayList<>();
            for (Future<RecordMetadata> f : futs) out.add(get(f));
            return out;
        }
    }

    List<RecordMetadata> produceValues(String topic, List<byte[]> values, Map<String, Object> conf) throws Exception {
        return produce(topic, values.stream().map(Rec::of).collect(Collectors.toList()), conf);
    }

    KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> conf) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, groupName("c"));
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10000);
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        p.putAll(conf);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static List<ConsumerRecord<byte[], byte[]>> pollN(KafkaConsumer<byte[], byte[]> c, int n, double seconds) {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        while (out.size() < n && System.nanoTime() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) out.add(r);
        }
        return out;
    }

    List<ConsumerRecord<byte[], byte[]>> readAll(String topic, int n, List<Integer> partitions, double seconds,
                                                 Map<String, Object> conf) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(conf)) {
            if (partitions == null) {
                partitions = c.partitionsFor(topic).stream().map(pi -> pi.partition()).sorted().collect(Collectors.toList());
            }
            List<TopicPartition> tps = partitions.stream().map(p -> new TopicPartition(topic, p)).collect(Collectors.toList());
            c.assign(tps);
            c.seekToBeginning(tps);
            List<ConsumerRecord<byte[], byte[]>> out = pollN(c, n, seconds);
            check(out.size() >= n, "consumed " + out.size() + " of " + n + " records");
            return out;
        }
    }

    List<ConsumerRecord<byte[], byte[]>> readAll(String topic, int n) {
        return readAll(topic, n, null, 20, Map.of());
    }

    static List<String> values(List<ConsumerRecord<byte[], byte[]>> recs) {
        return recs.stream().map(r -> s(r.value())).collect(Collectors.toList());
    }

    // ------------------------------------------------------------------ scenarios

    public String s_metadata() throws Exception {
        String topic = newTopic("metadata", 3);
        try (Admin a = admin()) {
            DescribeClusterResult cl = a.describeCluster();
            Collection<Node> nodes = get(cl.nodes());
            String host = bootstrap.substring(0, bootstrap.lastIndexOf(':'));
            int port = Integer.parseInt(bootstrap.substring(bootstrap.lastIndexOf(':') + 1));
            check(nodes.stream().anyMatch(n -> n.host().equals(host) && n.port() == port), "brokers " + nodes);
            check(get(a.listTopics().names()).contains(topic), "topic not listed");
            TopicDescription d = get(a.describeTopics(List.of(topic)).topicNameValues().get(topic));
            List<Integer> parts = d.partitions().stream().map(p -> p.partition()).sorted().collect(Collectors.toList());
            check(parts.equals(List.of(0, 1, 2)), "partitions " + parts);
            Set<Integer> ids = nodes.stream().map(Node::id).collect(Collectors.toSet());
            check(d.partitions().stream().allMatch(p -> p.leader() != null && ids.contains(p.leader().id())),
                  "partition without a known leader");
        }
        return null;
    }

    String acks(String acks, String scenario) throws Exception {
        String topic = newTopic(scenario, 1);
        List<byte[]> vals = payloads(20);
        produceValues(topic, vals, Map.of(ProducerConfig.ACKS_CONFIG, acks));
        check(values(readAll(topic, 20)).equals(strs(vals)), "records differ from what was produced");
        return null;
    }

    public String s_produce_acks0() throws Exception { return acks("0", "produce_acks0"); }

    public String s_produce_acks1() throws Exception { return acks("1", "produce_acks1"); }

    public String s_produce_acksall() throws Exception { return acks("all", "produce_acksall"); }

    public String s_keys_partitioner() throws Exception {
        String topic = newTopic("keys", 6);
        List<byte[]> vals = payloads(60);
        List<Rec> recs = new ArrayList<>();
        for (int i = 0; i < 60; i++) recs.add(new Rec(b("key-" + (i % 12)), vals.get(i), null, null, null));
        List<RecordMetadata> md = produce(topic, recs, Map.of());
        Map<String, Set<Integer>> where = new HashMap<>();
        Set<String> produced = new HashSet<>();
        for (int i = 0; i < 60; i++) {
            String k = s(recs.get(i).key());
            where.computeIfAbsent(k, x -> new TreeSet<>()).add(md.get(i).partition());
            produced.add(k + "|" + s(vals.get(i)) + "|" + md.get(i).partition());
        }
        check(where.size() == 12 && where.values().stream().allMatch(x -> x.size() == 1), "a key went to several partitions");
        check(where.values().stream().flatMap(Set::stream).distinct().count() > 1, "all keys in one partition");
        Set<String> got = readAll(topic, 60).stream().map(r -> s(r.key()) + "|" + s(r.value()) + "|" + r.partition())
            .collect(Collectors.toSet());
        check(got.equals(produced), "consumed key/partition differs");
        return null;
    }

    static final List<Header> HEADERS = List.of(new RecordHeader("h1", b("v1")), new RecordHeader("h2", b("")),
                                                new RecordHeader("h1", b("dup")));

    static List<String> headerList(Iterable<Header> hs) {
        List<String> out = new ArrayList<>();
        for (Header h : hs) out.add(h.key() + "=" + s(h.value()));
        return out;
    }

    public String s_headers() throws Exception {
        String topic = newTopic("headers", 1);
        produce(topic, List.of(new Rec(null, b("with-headers"), null, null, HEADERS)), Map.of());
        ConsumerRecord<byte[], byte[]> r = readAll(topic, 1).get(0);
        check(headerList(r.headers()).equals(headerList(HEADERS)), "headers " + headerList(r.headers()));
        return null;
    }

    public String s_null_values() throws Exception {
        String topic = newTopic("null", 1);
        produce(topic, List.of(new Rec(b("k1"), null, null, null, null), new Rec(b("k2"), b(""), null, null, null)), Map.of());
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 2);
        check(got.get(0).value() == null && "k1".equals(s(got.get(0).key())), "tombstone read as " + Arrays.toString(got.get(0).value()));
        check(got.get(1).value() != null && got.get(1).value().length == 0 && "k2".equals(s(got.get(1).key())),
              "empty value read as " + Arrays.toString(got.get(1).value()));
        return null;
    }

    String compression(String codec) throws Exception {
        String topic = newTopic("compression-" + codec, 1);
        List<byte[]> vals = new ArrayList<>();
        for (byte[] v : payloads(50)) vals.add(b(s(v).repeat(20)));
        produceValues(topic, vals, Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, 50));
        check(values(readAll(topic, 50)).equals(strs(vals)), "records differ");
        return null;
    }

    public String s_compression_gzip() throws Exception { return compression("gzip"); }

    public String s_compression_snappy() throws Exception { return compression("snappy"); }

    public String s_compression_lz4() throws Exception { return compression("lz4"); }

    public String s_compression_zstd() throws Exception { return compression("zstd"); }

    public String s_consume_assign() throws Exception {
        String topic = newTopic("assign", 3);
        List<byte[]> vals = payloads(10);
        List<Rec> recs = vals.stream().map(v -> new Rec(null, v, 1, null, null)).collect(Collectors.toList());
        produce(topic, recs, Map.of());
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 1);
            c.assign(List.of(tp));
            c.seek(tp, 5);
            List<ConsumerRecord<byte[], byte[]>> out = pollN(c, 5, 20);
            List<String> got = out.stream().map(r -> r.offset() + ":" + s(r.value())).collect(Collectors.toList());
            List<String> want = new ArrayList<>();
            for (int i = 5; i < 10; i++) want.add(i + ":" + s(vals.get(i)));
            check(got.equals(want), "got " + got);
        }
        return null;
    }

    public String s_consume_timestamp() throws Exception {
        String topic = newTopic("timestamp", 1);
        long t0 = System.currentTimeMillis() - 60_000;
        List<Rec> recs = new ArrayList<>();
        for (int i = 0; i < 5; i++) recs.add(new Rec(null, b("t" + i), null, t0 + i * 1000L, null));
        produce(topic, recs, Map.of());
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            OffsetAndTimestamp found = c.offsetsForTimes(Map.of(tp, t0 + 1500)).get(tp);
            check(found != null && found.offset() == 2, "offsetsForTimes gave " + found);
            c.assign(List.of(tp));
            c.seek(tp, found.offset());
            List<ConsumerRecord<byte[], byte[]>> out = pollN(c, 1, 20);
            check(!out.isEmpty() && "t2".equals(s(out.get(0).value())) && out.get(0).timestamp() == t0 + 2000,
                  "wrong first record " + (out.isEmpty() ? "none" : s(out.get(0).value()) + "@" + out.get(0).timestamp()));
        }
        return null;
    }

    /** Two group members, each polled in its own thread (a KafkaConsumer is single-threaded). */
    String group(String scenario, String assignor) throws Exception {
        String topic = newTopic(scenario, 4);
        List<byte[]> vals = payloads(40);
        List<Rec> recs = new ArrayList<>();
        for (int i = 0; i < 40; i++) recs.add(new Rec(b(String.valueOf(i)), vals.get(i), null, null, null));
        produce(topic, recs, Map.of());
        String group = groupName(scenario);
        Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                                          ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
        Set<String> seen = ConcurrentHashMap.newKeySet();
        List<AtomicReference<Set<Integer>>> assigned = List.of(new AtomicReference<>(Set.of()), new AtomicReference<>(Set.of()));
        AtomicReference<Throwable> error = new AtomicReference<>();
        AtomicReference<String> balanced = new AtomicReference<>();
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            AtomicReference<Set<Integer>> mine = assigned.get(i);
            Thread t = new Thread(() -> {
                try (KafkaConsumer<byte[], byte[]> c = consumer(conf)) {
                    c.subscribe(List.of(topic));
                    while (!stop.get()) {
                        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) seen.add(s(r.value()));
                        mine.set(c.assignment().stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new)));
                    }
                } catch (Throwable e) {
                    error.compareAndSet(null, e);
                }
            });
            t.start();
            threads.add(t);
        }
        try {
            waitUntil(() -> {
                if (error.get() != null) return true;
                Set<Integer> a0 = assigned.get(0).get(), a1 = assigned.get(1).get();
                Set<Integer> both = new TreeSet<>(a0);
                both.addAll(a1);
                if (!a0.isEmpty() && !a1.isEmpty() && Collections.disjoint(a0, a1) && both.equals(Set.of(0, 1, 2, 3))
                    && seen.size() == 40) {
                    balanced.set("assignment " + a0 + " / " + a1);
                    return true;
                }
                return false;
            }, 45, "a balanced 2-member group that consumed all 40 records");
        } finally {
            stop.set(true);
            for (Thread t : threads) t.join(20000);
        }
        if (error.get() != null) throw new RuntimeException(error.get());
        return balanced.get();
    }

    public String s_group_range() throws Exception {
        return group("group_range", "org.apache.kafka.clients.consumer.RangeAssignor");
    }

    public String s_group_roundrobin() throws Exception {
        return group("group_roundrobin", "org.apache.kafka.clients.consumer.RoundRobinAssignor");
    }

    public String s_group_sticky() throws Exception {
        return group("group_sticky", "org.apache.kafka.clients.consumer.StickyAssignor");
    }

    public String s_group_cooperative_sticky() throws Exception {
        return group("group_cooperative_sticky", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
    }

    public String s_commit_resume() throws Exception {
        String topic = newTopic("commit", 1);
        List<byte[]> vals = payloads(10);
        produceValues(topic, vals, Map.of());
        String group = groupName("commit");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> got = pollN(c, 4, 30);
            check(got.size() >= 4, "first consumer read " + got.size() + " records");
            c.commitSync(Map.of(tp, new OffsetAndMetadata(4)));
            OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
            check(committed != null && committed.offset() == 4, "committed() = " + committed);
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> got = pollN(c, 1, 30);
            check(!got.isEmpty() && got.get(0).offset() == 4 && s(vals.get(4)).equals(s(got.get(0).value())),
                  "resumed at offset " + (got.isEmpty() ? "none" : got.get(0).offset()));
        }
        return null;
    }

    public String s_idempotent_producer() throws Exception {
        String topic = newTopic("idempotent", 1);
        List<byte[]> vals = payloads(10);
        produceValues(topic, vals, Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true, ProducerConfig.ACKS_CONFIG, "all"));
        check(values(readAll(topic, 10)).equals(strs(vals)), "records differ");
        return null;
    }

    public String s_transactions() throws Exception {
        String topic = newTopic("txn", 1);
        Map<String, Object> conf = Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-tx",
                                          ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 30000,
                                          ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                                          ProducerConfig.MAX_BLOCK_MS_CONFIG, 15000);
        try (KafkaProducer<byte[], byte[]> p = producer(conf)) {
            p.initTransactions();
            p.beginTransaction();
            for (String v : List.of("c1", "c2", "c3")) p.send(new ProducerRecord<>(topic, b(v)));
            p.commitTransaction();
            p.beginTransaction();
            for (String v : List.of("a1", "a2")) p.send(new ProducerRecord<>(topic, b(v)));
            p.flush();
            p.abortTransaction();
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, b("c4")));
            p.commitTransaction();
        }
        List<String> got = values(readAll(topic, 4, null, 20, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed")));
        check(got.equals(List.of("c1", "c2", "c3", "c4")), "read " + got);
        return null;
    }

    /** A transactional producer with its producer id initialised. */
    KafkaProducer<byte[], byte[]> txnProducer(String transactionalId) {
        KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId,
                                                          ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 30000,
                                                          ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                                                          ProducerConfig.MAX_BLOCK_MS_CONFIG, 15000));
        p.initTransactions();
        return p;
    }

    /** ListOffsets(latest) per partition: the LSO for read_committed, the high watermark otherwise. */
    Map<Integer, Long> endOffsets(List<TopicPartition> tps, String isolation) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            Map<Integer, Long> out = new java.util.TreeMap<>();
            c.endOffsets(tps).forEach((tp, o) -> out.put(tp.partition(), o));
            return out;
        }
    }

    /** Records of {@code tps} and the end offsets their positions reached. */
    record Drained(List<ConsumerRecord<byte[], byte[]>> records, Map<Integer, Long> ends) {}

    /**
     * Every record of {@code tps} from the start until the consumer's position reaches the end offset of
     * its isolation level (a trailing control batch must be skipped too), then {@code settleMs} more in
     * which nothing else may arrive.
     */
    Drained drain(List<TopicPartition> tps, String isolation, long settleMs) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (tps.stream().anyMatch(tp -> c.position(tp) < ends.get(tp))) {
                if (System.nanoTime() > deadline) {
                    throw new CheckFailed("positions " + tps.stream().map(c::position).collect(Collectors.toList())
                        + " never reached the end offsets " + ends + " (" + isolation + ", " + out.size() + " records read)");
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(300))) out.add(r);
            }
            long settle = System.nanoTime() + settleMs * 1_000_000L;
            while (System.nanoTime() < settle) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) out.add(r);
            }
            Map<Integer, Long> byPart = new java.util.TreeMap<>();
            ends.forEach((tp, o) -> byPart.put(tp.partition(), o));
            return new Drained(out, byPart);
        }
    }

    /** Values per "topic:partition" in the order read. */
    static Map<String, List<String>> byPartition(List<ConsumerRecord<byte[], byte[]>> recs) {
        Map<String, List<String>> out = new java.util.TreeMap<>();
        for (ConsumerRecord<byte[], byte[]> r : recs) {
            out.computeIfAbsent(r.topic() + ":" + r.partition(), k -> new ArrayList<>()).add(s(r.value()));
        }
        return out;
    }

    public String s_txn_abort_multi() throws Exception {
        String a = newTopic("txn_abort_multi-a", 3);
        String b = newTopic("txn_abort_multi-b", 2);
        List<TopicPartition> tps = new ArrayList<>();
        for (int q = 0; q < 3; q++) tps.add(new TopicPartition(a, q));
        for (int q = 0; q < 2; q++) tps.add(new TopicPartition(b, q));
        try (KafkaProducer<byte[], byte[]> p = txnProducer(a + "-tx")) {
            p.beginTransaction();
            for (TopicPartition tp : tps) {
                for (int i = 0; i < 3; i++) p.send(new ProducerRecord<>(tp.topic(), tp.partition(), null, b("a-" + tp.partition() + "-" + i)));
            }
            p.flush();
            p.abortTransaction();
            p.beginTransaction();
            for (TopicPartition tp : tps) {
                for (int i = 0; i < 2; i++) p.send(new ProducerRecord<>(tp.topic(), tp.partition(), null, b("c-" + tp.partition() + "-" + i)));
            }
            p.commitTransaction();
        }
        Map<String, List<String>> got = byPartition(drain(tps, "read_committed", 500).records());
        Map<String, List<String>> want = new java.util.TreeMap<>();
        for (TopicPartition tp : tps) want.put(tp.topic() + ":" + tp.partition(), List.of("c-" + tp.partition() + "-0", "c-" + tp.partition() + "-1"));
        check(got.equals(want), "read_committed read " + got);
        return null;
    }

    /** One record per partition, acknowledged before the next step: the log order is known. */
    static Map<Integer, Long> sendEach(KafkaProducer<byte[], byte[]> p, String topic, String tag) throws Exception {
        Map<Integer, Long> out = new java.util.TreeMap<>();
        for (int q = 0; q < 2; q++) out.put(q, get(p.send(new ProducerRecord<>(topic, q, null, b(tag + "-" + q)))).offset());
        return out;
    }

    public String s_txn_read_committed() throws Exception {
        String topic = newTopic("txn_read_committed", 2);
        List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
        Map<Integer, Long> lsoOpen;
        try (KafkaProducer<byte[], byte[]> p1 = txnProducer(topic + "-tx1"); KafkaProducer<byte[], byte[]> p2 = txnProducer(topic + "-tx2")) {
            p1.beginTransaction();
            Map<Integer, Long> first1 = sendEach(p1, topic, "p1-t1-0");
            p2.beginTransaction();
            Map<Integer, Long> first2 = sendEach(p2, topic, "p2-t1-0");
            sendEach(p1, topic, "p1-t1-1");
            Map<Integer, Long> hw = new java.util.TreeMap<>();
            sendEach(p2, topic, "p2-t1-1").forEach((q, o) -> hw.put(q, o + 1));
            Map<Integer, Long> lso = endOffsets(tps, "read_committed");
            check(lso.equals(first1), "LSO " + lso + " with both open, want " + first1);
            Map<Integer, Long> got = endOffsets(tps, "read_uncommitted");
            check(got.equals(hw), "high watermark " + got + ", want " + hw);
            p1.commitTransaction();
            lsoOpen = endOffsets(tps, "read_committed");
            check(lsoOpen.equals(first2), "LSO " + lsoOpen + " after the first commit, want " + first2);
            got = endOffsets(tps, "read_uncommitted");
            check(got.get(0) > hw.get(0) && got.get(1) > hw.get(1), "high watermark did not cover the marker");
            Map<String, List<String>> below = byPartition(drain(tps, "read_committed", 500).records());
            Map<String, List<String>> want = Map.of(topic + ":0", List.of("p1-t1-0-0"), topic + ":1", List.of("p1-t1-0-1"));
            check(below.equals(want), "below the LSO read " + below + ", want " + want);
            p2.abortTransaction();
            p2.beginTransaction();
            sendEach(p2, topic, "p2-t2-0");
            p1.beginTransaction();
            sendEach(p1, topic, "p1-t2-0");
            p2.commitTransaction();
            p1.abortTransaction();
        }
        Drained d = drain(tps, "read_committed", 500);
        Map<String, List<String>> got = byPartition(d.records());
        Map<String, List<String>> want = new java.util.TreeMap<>();
        for (int q = 0; q < 2; q++) want.put(topic + ":" + q, List.of("p1-t1-0-" + q, "p1-t1-1-" + q, "p2-t2-0-" + q));
        check(got.equals(want), "read_committed read " + got + ", want " + want);
        Map<Integer, Long> hw = endOffsets(tps, "read_uncommitted");
        check(d.ends().equals(hw), "final LSO " + d.ends() + " != high watermark " + hw);
        return "LSO " + pyDict(lsoOpen) + " while a transaction was open, " + pyDict(hw) + " at the end";
    }

    /** {0: 1, 1: 1}, as the Python cells print it. */
    static String pyDict(Map<Integer, Long> m) {
        return "{" + m.entrySet().stream().map(e -> e.getKey() + ": " + e.getValue()).collect(Collectors.joining(", ")) + "}";
    }

    public String s_txn_read_uncommitted() throws Exception {
        String topic = newTopic("txn_read_uncommitted", 1);
        List<TopicPartition> tps = List.of(new TopicPartition(topic, 0));
        List<String> sent = new ArrayList<>();
        long last;
        try (KafkaProducer<byte[], byte[]> p = txnProducer(topic + "-tx")) {
            java.util.function.Function<String, Long> send = v -> {
                try {
                    long o = get(p.send(new ProducerRecord<>(topic, 0, null, b(v)))).offset();
                    sent.add(o + "=" + v);
                    return o;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            };
            p.beginTransaction();
            send.apply("u-c1");
            send.apply("u-c2");
            p.commitTransaction();
            p.beginTransaction();
            send.apply("u-a1");
            send.apply("u-a2");
            p.abortTransaction();
            p.beginTransaction();
            last = send.apply("u-o1");
            Drained d = drain(tps, "read_uncommitted", 500);
            List<String> got = d.records().stream().map(r -> r.offset() + "=" + s(r.value())).collect(Collectors.toList());
            check(got.equals(sent), "read " + got + ", sent " + sent);
            check(d.ends().get(0) == last + 1, "high watermark " + d.ends().get(0) + " with a transaction open, want " + (last + 1));
            p.commitTransaction();
        }
        Drained d = drain(tps, "read_uncommitted", 500);
        List<String> got = d.records().stream().map(r -> r.offset() + "=" + s(r.value())).collect(Collectors.toList());
        check(got.equals(sent), "read " + got + ", sent " + sent);
        check(d.ends().get(0) == last + 2, "high watermark " + d.ends().get(0) + " after the commit, want " + (last + 2));
        return null;
    }

    public String s_txn_send_offsets() throws Exception {
        String src = newTopic("txn_send_offsets-in", 1);
        String dst = newTopic("txn_send_offsets-out", 1);
        List<byte[]> vals = new ArrayList<>();
        for (int i = 0; i < 10; i++) vals.add(b(String.format("in-%05d", i)));
        produceValues(src, vals, Map.of());
        String group = groupName("txn_send_offsets");
        TopicPartition tp = new TopicPartition(src, 0);
        // Admin.listConsumerGroupOffsets: OffsetFetch without require_stable, so a pending
        // transactional offset is not visible (the last committed one is); -1 when there is none.
        java.util.concurrent.Callable<Long> committed = () -> {
            try (Admin a = admin()) {
                OffsetAndMetadata om = get(a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).get(tp);
                return om == null ? -1L : om.offset();
            }
        };
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                                                               ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"));
             KafkaProducer<byte[], byte[]> p = txnProducer(dst + "-tx")) {
            c.subscribe(List.of(src));
            List<ConsumerRecord<byte[], byte[]>> recs = pollN(c, 10, 30);
            check(values(recs).equals(strs(vals)), "consumed " + recs.size() + " of 10 input records");
            interface Txn { long run(int lo, int hi, boolean commit) throws Exception; }
            Txn txn = (lo, hi, commit) -> {
                p.beginTransaction();
                for (ConsumerRecord<byte[], byte[]> r : recs.subList(lo, hi)) {
                    p.send(new ProducerRecord<>(dst, 0, null, b("out-" + s(r.value()))));
                }
                p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(hi)), c.groupMetadata());
                p.flush();
                long before = committed.call();
                if (commit) p.commitTransaction(); else p.abortTransaction();
                return before;
            };
            long before = txn.run(0, 4, true);
            check(before < 0, "offset " + before + " visible before the first transaction committed");
            long now = committed.call();
            check(now == 4, "committed offset " + now + " after the commit, want 4");
            before = txn.run(4, 7, false);
            check(before == 4, "committed offset " + before + " during the second transaction, want 4");
            now = committed.call();
            check(now == 4, "committed offset " + now + " after the abort, want 4");
            before = txn.run(4, 10, true);
            check(before == 4, "committed offset " + before + " during the third transaction, want 4");
            now = committed.call();
            check(now == 10, "committed offset " + now + " after the commit, want 10");
        }
        List<String> got = values(drain(List.of(new TopicPartition(dst, 0)), "read_committed", 500).records());
        List<String> want = strs(vals).stream().map(v -> "out-" + v).collect(Collectors.toList());
        check(got.equals(want), "output " + got);
        return null;
    }

    public String s_admin_topics() throws Exception {
        try (Admin a = admin()) {
            String name = topicName("admin-topics");
            get(a.createTopics(List.of(new NewTopic(name, 2, (short) 1))).all());
            check(get(a.listTopics().names()).contains(name), "created topic not listed");
            get(a.deleteTopics(List.of(name)).all());
            waitUntil(() -> {
                try {
                    return !get(a.listTopics().names()).contains(name);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }, 10, "deleted topic to disappear");
        }
        return null;
    }

    public String s_admin_partitions() throws Exception {
        String topic = newTopic("admin-partitions", 1);
        try (Admin a = admin()) {
            get(a.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
            waitUntil(() -> {
                try {
                    return get(a.describeTopics(List.of(topic)).topicNameValues().get(topic)).partitions().size() == 3;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }, 10, "3 partitions in metadata");
        }
        produce(topic, List.of(new Rec(null, b("p2"), 2, null, null)), Map.of());
        return null;
    }

    static String config(Admin a, ConfigResource res, String key) throws Exception {
        Config c = get(a.describeConfigs(List.of(res)).values().get(res));
        ConfigEntry e = c.get(key);
        check(e != null, key + " not in describeConfigs response");
        return e.value();
    }

    public String s_admin_configs() throws Exception {
        String topic = newTopic("admin-configs", 1, Map.of("retention.ms", "3600000"));
        try (Admin a = admin()) {
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            String got = config(a, res, "retention.ms");
            check("3600000".equals(got), "retention.ms = " + got);
            get(a.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "12345"), AlterConfigOp.OpType.SET)))).all());
            got = config(a, res, "retention.ms");
            check("12345".equals(got), "after alter retention.ms = " + got);
            Node node = get(a.describeCluster().nodes()).iterator().next();
            got = config(a, new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(node.id())), "num.partitions");
            check(got != null, "broker config not described");
        }
        return null;
    }

    public String s_admin_groups() throws Exception {
        String topic = newTopic("admin-groups", 1);
        produceValues(topic, List.of(b("x")), Map.of());
        String group = groupName("admin-groups");
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.subscribe(List.of(topic));
            check(!pollN(c, 1, 20).isEmpty(), "no record in the group consumer");
            c.commitSync();
        }
        try (Admin a = admin()) {
            BooleanSupplier listed = () -> {
                try {
                    return get(a.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
                        .map(GroupListing::groupId).anyMatch(group::equals);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            };
            check(listed.getAsBoolean(), "group not listed");
            ConsumerGroupDescription d = get(a.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            check(d.groupState() == GroupState.EMPTY, "described state " + d.groupState());
            get(a.deleteConsumerGroups(List.of(group)).all());
            waitUntil(() -> !listed.getAsBoolean(), 10, "deleted group to disappear");
        }
        return null;
    }

    public String s_large_messages() throws Exception {
        String topic = newTopic("large", 1);
        byte[] big = new byte[LARGE_SIZE];
        new Random().nextBytes(big);
        Map<String, Object> conf = new HashMap<>(Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 * 1024 * 1024,
                                                        ProducerConfig.LINGER_MS_CONFIG, 0));
        produceValues(topic, List.of(big), conf);
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 1, null, 20, Map.of(
            ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 4 * 1024 * 1024,
            ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 4 * 1024 * 1024));
        check(Arrays.equals(got.get(0).value(), big), "large value differs");
        byte[] over = new byte[OVERSIZE];
        new Random().nextBytes(over);
        conf.put(ProducerConfig.RETRIES_CONFIG, 0);
        try {
            produceValues(topic, List.of(over), conf);
        } catch (RecordTooLargeException e) {
            return null;
        }
        throw new CheckFailed("broker accepted a record over max.message.bytes");
    }

    public String s_many_partitions() throws Exception {
        String topic = newTopic("many", 64);
        List<Rec> recs = new ArrayList<>();
        for (int i = 0; i < 64; i++) recs.add(new Rec(null, b("p" + i), i, null, null));
        produce(topic, recs, Map.of(ProducerConfig.LINGER_MS_CONFIG, 20));
        List<Integer> parts = new ArrayList<>();
        for (int i = 0; i < 64; i++) parts.add(i);
        List<String> got = readAll(topic, 64, parts, 30, Map.of()).stream().map(r -> r.partition() + ":" + s(r.value()))
            .sorted().collect(Collectors.toList());
        List<String> want = recs.stream().map(r -> r.partition() + ":" + s(r.value())).sorted().collect(Collectors.toList());
        check(got.equals(want), "records differ");
        return null;
    }

    // ------------------------------------------------------------------ security
    // compat/security.py's broker: listeners, certificates and credentials come from COMPAT_SEC_*.

    static String sec(String name) {
        String v = System.getenv("COMPAT_SEC_" + name);
        if (v == null || v.isEmpty()) {
            throw new CheckFailed("COMPAT_SEC_" + name + " not set: security scenarios run against compat/security.py's broker");
        }
        return v;
    }

    static String readFile(String path) {
        try {
            return java.nio.file.Files.readString(java.nio.file.Path.of(path));
        } catch (java.io.IOException e) {
            throw new CheckFailed("cannot read " + path + ": " + e);
        }
    }

    /** How to connect to a listener: kafka-clients' settings, and a label for the cell's detail. */
    record Login(String label, String protocol, Map<String, Object> conf) {}

    /**
     * The settings for {@code listener} (SASL_PLAINTEXT, SSL, MTLS, SASL_SSL): SASL as user/password
     * (alice's by default) with {@code mechanism}; MTLS with the client certificate {@code cert}
     * ("client", "untrusted" or null for none), given inline as PEM.
     */
    /** An unsecured JWS (alg none, empty signature) for {@code subject}, expiring {@code lifetimeS} from now. */
    static String unsecuredJws(String subject, long lifetimeS) {
        long now = System.currentTimeMillis() / 1000;
        java.util.Base64.Encoder enc = java.util.Base64.getUrlEncoder().withoutPadding();
        String header = enc.encodeToString(b("{\"alg\":\"none\"}"));
        String claims = enc.encodeToString(b("{\"sub\":\"" + subject + "\",\"iat\":" + Math.min(now, now + lifetimeS - 60)
            + ",\"exp\":" + (now + lifetimeS) + "}"));
        return header + "." + claims + ".";
    }

    /**
     * A client login handler handing out a token whose exp claim passed 10 minutes ago (while
     * telling the client it lives on, so the broker is the one to refuse it).
     */
    public static final class ExpiredTokenLoginHandler implements org.apache.kafka.common.security.auth.AuthenticateCallbackHandler {
        @Override
        public void configure(Map<String, ?> configs, String mechanism,
                              List<javax.security.auth.login.AppConfigurationEntry> entries) { }

        @Override
        public void close() { }

        @Override
        public void handle(javax.security.auth.callback.Callback[] callbacks) {
            for (javax.security.auth.callback.Callback cb : callbacks) {
                if (cb instanceof org.apache.kafka.common.security.oauthbearer.OAuthBearerTokenCallback t) {
                    long now = System.currentTimeMillis();
                    String user = sec("USER");
                    String jws = unsecuredJws(user, -600);
                    t.token(new org.apache.kafka.common.security.oauthbearer.OAuthBearerToken() {
                        @Override public String value() { return jws; }
                        @Override public Set<String> scope() { return Set.of(); }
                        @Override public long lifetimeMs() { return now + 3_600_000L; }
                        @Override public String principalName() { return user; }
                        @Override public Long startTimeMs() { return now; }
                    });
                }
            }
        }
    }

    static Login login(String listener, String mechanism, String user, String password, String cert) {
        String protocol = listener.equals("MTLS") ? "SSL" : listener;
        Map<String, Object> conf = new HashMap<>();
        conf.put("bootstrap.servers", sec(listener));
        conf.put("security.protocol", protocol);
        if ("OAUTHBEARER".equals(mechanism)) {
            // kafka-clients' default login handler makes an unsecured JWS with this sub claim.
            conf.put("sasl.mechanism", mechanism);
            conf.put("sasl.jaas.config", "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                + "unsecuredLoginStringClaim_sub=\"" + (user != null ? user : sec("USER")) + "\";");
        } else if (protocol.startsWith("SASL_")) {
            String module = mechanism.equals("PLAIN") ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
            conf.put("sasl.mechanism", mechanism);
            conf.put("sasl.jaas.config", module + " required username=\"" + (user != null ? user : sec("USER"))
                + "\" password=\"" + (password != null ? password : sec("PASSWORD")) + "\";");
        }
        if (protocol.endsWith("SSL")) {
            conf.put("ssl.truststore.type", "PEM");
            conf.put("ssl.truststore.location", sec("CA"));
            if (listener.equals("MTLS") && cert != null) {
                conf.put("ssl.keystore.type", "PEM");
                conf.put("ssl.keystore.certificate.chain", readFile(sec(cert.toUpperCase() + "_CERT")));
                conf.put("ssl.keystore.key", readFile(sec(cert.toUpperCase() + "_KEY")));
            }
        }
        return new Login(protocol + (mechanism != null ? "/" + mechanism : ""), protocol, conf);
    }

    static Login login(String listener, String mechanism) {
        return login(listener, mechanism, null, null, "client");
    }

    /** Create a topic over PLAINTEXT; produce and read back over the login's listener. */
    String secRoundtrip(String scenario, Login lg) throws Exception {
        String topic = newTopic(scenario, 2);
        List<byte[]> vals = payloads(10);
        List<RecordMetadata> metas = produceValues(topic, vals, lg.conf());
        check(metas.size() == 10, metas.size() + " acknowledged");
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 10, null, 20, lg.conf());
        check(new TreeSet<>(values(got)).equals(new TreeSet<>(strs(vals))), "records read back differ");
        return "10 records over " + lg.label();
    }

    public String s_sec_sasl_plain() throws Exception { return secRoundtrip("sec_sasl_plain", login("SASL_PLAINTEXT", "PLAIN")); }

    public String s_sec_sasl_scram_sha256() throws Exception {
        return secRoundtrip("sec_sasl_scram_sha256", login("SASL_PLAINTEXT", "SCRAM-SHA-256"));
    }

    public String s_sec_sasl_scram_sha512() throws Exception {
        return secRoundtrip("sec_sasl_scram_sha512", login("SASL_PLAINTEXT", "SCRAM-SHA-512"));
    }

    public String s_sec_sasl_oauthbearer() throws Exception {
        return secRoundtrip("sec_sasl_oauthbearer", login("SASL_PLAINTEXT", "OAUTHBEARER"));
    }

    public String s_sec_ssl() throws Exception { return secRoundtrip("sec_ssl", login("SSL", null)); }

    public String s_sec_ssl_client_cert() throws Exception { return secRoundtrip("sec_ssl_client_cert", login("MTLS", null)); }

    public String s_sec_sasl_ssl_plain() throws Exception { return secRoundtrip("sec_sasl_ssl_plain", login("SASL_SSL", "PLAIN")); }

    public String s_sec_sasl_ssl_scram() throws Exception {
        return secRoundtrip("sec_sasl_ssl_scram", login("SASL_SSL", "SCRAM-SHA-512"));
    }

    /**
     * Each refused login must fail with kafka-clients' authentication error (SASL: the broker's
     * SaslAuthenticate answer; TLS: the handshake, or under TLS 1.3 the broker's alert after it);
     * then the right login works on the same listener.
     */
    String secRefused(String scenario, List<Map.Entry<String, Login>> bad, Login good) throws Exception {
        String topic = newTopic(scenario, 1);
        List<String> notes = new ArrayList<>();
        for (Map.Entry<String, Login> e : bad) {
            String label = e.getKey();
            Map<String, Object> conf = new HashMap<>(e.getValue().conf());
            conf.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 10000);
            Throwable err = null;
            try (KafkaProducer<byte[], byte[]> p = producer(conf)) {
                get(p.send(new ProducerRecord<>(topic, b("refused"))));
            } catch (Throwable t) {
                err = t;
            }
            check(err != null, label + ": the broker accepted it");
            Throwable cause = err;
            while (!(cause instanceof org.apache.kafka.common.errors.AuthenticationException) && cause.getCause() != null) {
                cause = cause.getCause();
            }
            boolean sasl = e.getValue().protocol().startsWith("SASL_");
            boolean ok = sasl ? cause instanceof org.apache.kafka.common.errors.SaslAuthenticationException
                : cause instanceof org.apache.kafka.common.errors.SslAuthenticationException;
            check(ok, label + ": failed, but not with an authentication error: " + firstLine(err));
            notes.add(label + ": " + firstLine(cause).substring(0, Math.min(90, firstLine(cause).length())));
        }
        return secRoundtrip(scenario, good) + "; refused: " + String.join("; ", notes);
    }

    public String s_sec_wrong_password() throws Exception {
        return secRefused("sec_wrong_password", List.of(
            Map.entry("PLAIN with a wrong password", login("SASL_PLAINTEXT", "PLAIN", null, sec("WRONG_PASSWORD"), null)),
            Map.entry("SCRAM-SHA-256 with a wrong password",
                      login("SASL_PLAINTEXT", "SCRAM-SHA-256", null, sec("WRONG_PASSWORD"), null))),
            login("SASL_PLAINTEXT", "PLAIN"));
    }

    public String s_sec_unknown_user() throws Exception {
        return secRefused("sec_unknown_user", List.of(
            Map.entry("PLAIN as an unknown user", login("SASL_PLAINTEXT", "PLAIN", sec("UNKNOWN_USER"), null, null)),
            Map.entry("SCRAM-SHA-512 as an unknown user",
                      login("SASL_PLAINTEXT", "SCRAM-SHA-512", sec("UNKNOWN_USER"), null, null))),
            login("SASL_PLAINTEXT", "SCRAM-SHA-512"));
    }

    public String s_sec_oauthbearer_expired() throws Exception {
        Login expired = login("SASL_PLAINTEXT", "OAUTHBEARER");
        expired.conf().put("sasl.login.callback.handler.class", ExpiredTokenLoginHandler.class.getName());
        return secRefused("sec_oauthbearer_expired",
            List.of(Map.entry("an OAUTHBEARER token expired 10 minutes ago", expired)), login("SASL_PLAINTEXT", "OAUTHBEARER"));
    }

    public String s_sec_untrusted_cert() throws Exception {
        return secRefused("sec_untrusted_cert", List.of(
            Map.entry("a certificate from an untrusted CA", login("MTLS", null, null, null, "untrusted")),
            Map.entry("no client certificate", login("MTLS", null, null, null, null))),
            login("MTLS", null));
    }

    // ------------------------------------------------------------------ main

    static String firstLine(Throwable e) {
        while ((e instanceof ExecutionException || (e instanceof RuntimeException && e.getClass() == RuntimeException.class))
               && e.getCause() != null) {
            e = e.getCause();
        }
        String msg = e.getMessage() == null ? "" : e.getMessage().strip().split("\n", 2)[0];
        String text = e instanceof CheckFailed ? "CheckFailed: " + msg
            : e.getClass().getSimpleName() + (msg.isEmpty() ? "" : ": " + msg);
        return text.length() > 300 ? text.substring(0, 300) : text;
    }

    static String json(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (ch < 0x20) out.append(String.format("\\u%04x", (int) ch));
                    else out.append(ch);
                }
            }
        }
        return out.append('"').toString();
    }

    /** Prints the cell's result line (the runner reads the last one starting with the prefix). */
    static void report(String status, String detail) {
        System.out.flush();
        System.out.println(PREFIX + "{\"status\": " + json(status) + ", \"detail\": " + json(detail == null ? "" : detail) + "}");
        System.out.flush();
    }

    /** Runs ``s_<scenario>`` of {@code target}; a missing method is n/a with {@code naDetail}. */
    static void run(Object target, String scenario, String naDetail) {
        Method m;
        try {
            m = target.getClass().getMethod("s_" + scenario);
        } catch (NoSuchMethodException e) {
            report("na", naDetail);
            return;
        }
        try {
            Object note = m.invoke(target);
            report("pass", note == null ? "" : note.toString());
        } catch (java.lang.reflect.InvocationTargetException e) {
            Throwable cause = e.getCause();
            if (cause instanceof NotSupported) {
                report("na", cause.getMessage());
            } else {
                cause.printStackTrace();
                report("fail", firstLine(cause));
            }
        } catch (Throwable e) {
            e.printStackTrace();
            report("fail", firstLine(e));
        }
    }

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: CompatCell SCENARIO BOOTSTRAP");
            System.exit(2);
        }
        String scenario = args[0];
        run(new CompatCell(args[1]), scenario, scenario.startsWith("streams_")
            ? "a Kafka Streams scenario (Java library): it runs in the kafka-streams column"
            : "kafka-clients has no implementation of this feature");
        // Client threads (e.g. a producer's I/O thread after a failed close) must not keep the cell alive.
        System.exit(0);
    }
}
