// The kafka-streams column of the compatibility matrix: `java -cp ... StreamsCell SCENARIO BOOTSTRAP`.
// streams_wordcount_alos / streams_wordcount_eos run WordCountApp (a stateful word count with a
// changelog-backed store) as a child JVM, kill it forcibly (SIGKILL) while input is still arriving,
// restart it with the same application.id, and check the counts in the output topic:
//   exactly_once_v2 -> read with read_committed, every word's final count is exact and no committed
//                      count ever exceeded it (the restart reuses the state dir; after an unclean
//                      stop Streams rebuilds the store from its changelog);
//   at_least_once   -> the restart uses a fresh state dir (the store is restored from the changelog
//                      alone); once the app has committed the whole input and the output is quiet,
//                      every word's final count is >= the exact one (replays may count twice).
// Every other scenario is n/a. Prints one COMPAT-RESULT line, as CompatCell does.

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.TreeMap;
import java.util.UUID;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class StreamsCell {
    static final String NA = "Kafka Streams is a stream-processing library; this scenario is for producer/consumer clients";
    static final int PARTITIONS = 2;
    static final int LINES = 1200;
    static final int WORDS_PER_LINE = 5;
    static final int VOCABULARY = 30;

    final String bootstrap;
    final Path work;
    final List<Process> apps = new ArrayList<>();

    StreamsCell(String bootstrap) throws IOException {
        this.bootstrap = bootstrap;
        this.work = Files.createTempDirectory("kbroker-compat-streams-");
    }

    /** One run of the app: a child JVM with the same classpath, its output in a log file. */
    Process startApp(String appId, String input, String output, Path stateDir, String guarantee, String logName)
            throws IOException {
        String java = ProcessHandle.current().info().command()
            .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", System.getProperty("java.class.path"),
            "WordCountApp", bootstrap, appId, input, output, stateDir.toString(), guarantee));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(work.resolve(logName).toFile());
        Process p = pb.start();
        apps.add(p);
        return p;
    }

    /** The most telling part of an app's log: its fatal error and root cause, else its first ERROR line. */
    String logSummary(String logName) {
        try {
            List<String> lines = Files.readAllLines(work.resolve(logName), StandardCharsets.UTF_8);
            for (int i = 0; i < lines.size(); i++) {
                if (!lines.get(i).startsWith("WORDCOUNT-ERROR ")) continue;
                String root = "";
                for (int j = i + 1; j < lines.size() && !lines.get(j).startsWith("["); j++) {
                    if (lines.get(j).startsWith("Caused by: ")) root = lines.get(j).substring("Caused by: ".length());
                }
                String fatal = lines.get(i).substring("WORDCOUNT-ERROR ".length());
                return root.isEmpty() ? fatal : fatal + "; root cause " + root;
            }
            for (String l : lines) {
                if (l.contains(" ERROR ")) return l.replaceFirst("^\\[[^\\]]*\\] ", "").strip();
            }
            for (int i = lines.size() - 1; i >= 0; i--) if (!lines.get(i).isBlank()) return lines.get(i).strip();
            return "(empty log)";
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    void checkAlive(Process app, String logName) {
        if (!app.isAlive()) {
            throw new CompatCell.CheckFailed("the Streams app exited with " + app.exitValue() + ": " + logSummary(logName));
        }
    }

    /** Reads the output topic from the beginning and keeps each word's latest and highest count. */
    static final class OutputWatcher implements AutoCloseable {
        final KafkaConsumer<String, Long> consumer;
        final Map<String, Long> latest = new TreeMap<>();
        final Map<String, Long> highest = new HashMap<>();
        int updates;

        OutputWatcher(String bootstrap, String topic, boolean readCommitted) {
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, readCommitted ? "read_committed" : "read_uncommitted");
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            consumer = new KafkaConsumer<>(p, new StringDeserializer(), new LongDeserializer());
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
        }

        void poll(long millis) {
            for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(millis))) {
                updates++;
                latest.put(r.key(), r.value());
                highest.merge(r.key(), r.value(), Math::max);
            }
        }

        long total() {
            return latest.values().stream().mapToLong(Long::longValue).sum();
        }

        @Override
        public void close() {
            consumer.close();
        }
    }

    static List<String> lines(Map<String, Long> expected) {
        Random rnd = new Random(42);
        List<String> out = new ArrayList<>();
        for (int i = 0; i < LINES; i++) {
            StringBuilder line = new StringBuilder();
            for (int j = 0; j < WORDS_PER_LINE; j++) {
                String w = String.format("w%02d", rnd.nextInt(VOCABULARY));
                expected.merge(w, 1L, Long::sum);
                line.append(j == 0 ? "" : " ").append(j % 2 == 0 ? w : w.toUpperCase());
            }
            out.add(line.toString());
        }
        return out;
    }

    /** The app group's committed offsets of the input partitions that lag their end ('' when none does). */
    static String inputLag(Admin admin, String appId, String input) throws Exception {
        Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
        for (int i = 0; i < PARTITIONS; i++) specs.put(new TopicPartition(input, i), OffsetSpec.latest());
        Map<TopicPartition, Long> ends = new TreeMap<>(Comparator.comparing(TopicPartition::toString));
        admin.listOffsets(specs).all().get().forEach((tp, info) -> ends.put(tp, info.offset()));
        Map<TopicPartition, OffsetAndMetadata> committed =
            admin.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get();
        StringBuilder lag = new StringBuilder();
        for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
            OffsetAndMetadata c = committed.get(e.getKey());
            if ((c == null ? 0 : c.offset()) < e.getValue()) {
                lag.append(lag.length() == 0 ? "" : ", ").append(e.getKey()).append(" committed ")
                    .append(c == null ? "none" : c.offset()).append(" of ").append(e.getValue());
            }
        }
        return lag.toString();
    }

    /** The sum of a topic's log start offsets. */
    static long logStart(Admin admin, String topic) throws Exception {
        Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
        for (int i = 0; i < PARTITIONS; i++) specs.put(new TopicPartition(topic, i), OffsetSpec.earliest());
        return admin.listOffsets(specs).all().get().values().stream().mapToLong(i -> i.offset()).sum();
    }

    String wordcount(String guarantee) throws Exception {
        boolean eos = guarantee.startsWith("exactly_once");
        String tag = eos ? "eos" : "alos";
        String id = UUID.randomUUID().toString().substring(0, 8);
        String input = "compat-streams-" + tag + "-in-" + id;
        String output = "compat-streams-" + tag + "-out-" + id;
        String appId = "compat-streams-" + tag + "-" + id;
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        Map<String, Long> expected = new TreeMap<>();
        List<String> lines = lines(expected);
        long totalWords = (long) LINES * WORDS_PER_LINE;
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 20000);
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        try (Admin admin = Admin.create(ap);
             KafkaProducer<String, String> producer = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer());
             OutputWatcher out = new OutputWatcher(bootstrap, output, eos)) {
            admin.createTopics(List.of(new NewTopic(input, PARTITIONS, (short) 1),
                                       new NewTopic(output, PARTITIONS, (short) 1))).all().get();
            int half = LINES / 2;
            for (int i = 0; i < half; i++) producer.send(new ProducerRecord<>(input, "line-" + i, lines.get(i)));
            producer.flush();

            Path state1 = work.resolve("state-1");
            Process app = startApp(appId, input, output, state1, guarantee, "app-1.log");
            long deadline = System.nanoTime() + Duration.ofSeconds(45).toNanos();
            while (out.updates == 0) {
                checkAlive(app, "app-1.log");
                if (System.nanoTime() > deadline) {
                    throw new CompatCell.CheckFailed("no output from the Streams app within 45 s: " + logSummary("app-1.log"));
                }
                out.poll(200);
            }
            // The rest of the input arrives in chunks; the app is killed half-way through them, so
            // input produced before and after the kill is left for the restarted app.
            int chunks = 6;
            int per = (LINES - half) / chunks;
            long atKill = -1;
            for (int c = 0; c < chunks; c++) {
                for (int i = half + c * per; i < half + (c + 1) * per; i++) producer.send(new ProducerRecord<>(input, "line-" + i, lines.get(i)));
                producer.flush();
                out.poll(150);
                if (c == chunks / 2 - 1) {
                    checkAlive(app, "app-1.log");
                    app.destroyForcibly();  // SIGKILL: no close, no commit, an open transaction left behind
                    app.waitFor();
                    out.poll(100);
                    atKill = out.total();
                }
            }
            CompatCell.check(atKill < totalWords, "the app had counted all words before it was killed");

            Path state2 = eos ? state1 : work.resolve("state-2");
            Process app2 = startApp(appId, input, output, state2, guarantee, "app-2.log");
            deadline = System.nanoTime() + Duration.ofSeconds(75).toNanos();
            long quietSince = System.nanoTime();
            int seen = out.updates;
            while (true) {
                checkAlive(app2, "app-2.log");
                out.poll(300);
                if (out.updates != seen) {
                    seen = out.updates;
                    quietSince = System.nanoTime();
                }
                boolean reached = expected.entrySet().stream()
                    .allMatch(e -> out.latest.getOrDefault(e.getKey(), 0L) >= e.getValue());
                boolean quiet = System.nanoTime() - quietSince > Duration.ofSeconds(2).toNanos();
                if (reached && quiet && inputLag(admin, appId, input).isEmpty()) {
                    out.poll(500);  // anything committed after the app's last input commit
                    if (out.updates == seen) break;
                    seen = out.updates;
                    quietSince = System.nanoTime();
                }
                if (System.nanoTime() > deadline) {
                    throw new CompatCell.CheckFailed("after the restart the counts did not reach the input's ("
                        + out.total() + " of " + totalWords + " words counted; input "
                        + (inputLag(admin, appId, input).isEmpty() ? "all committed" : inputLag(admin, appId, input))
                        + "): " + logSummary("app-2.log"));
                }
            }
            String killed = "killed at " + atKill + "/" + totalWords + " words counted";
            // Streams deletes the repartition records it has committed (DeleteRecords).
            String repartition = appId + "-" + WordCountApp.STORE + "-repartition";
            long purgeDeadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (logStart(admin, repartition) == 0) {
                checkAlive(app2, "app-2.log");
                if (System.nanoTime() > purgeDeadline) {
                    throw new CompatCell.CheckFailed("the app did not purge its repartition topic (log start offsets stay 0): "
                        + logSummary("app-2.log"));
                }
                Thread.sleep(200);
            }
            if (eos) {
                List<String> wrong = expected.entrySet().stream()
                    .filter(e -> !e.getValue().equals(out.latest.get(e.getKey()))
                                 || out.highest.getOrDefault(e.getKey(), 0L) > e.getValue())
                    .map(e -> e.getKey() + "=" + out.latest.get(e.getKey()) + " (max " + out.highest.get(e.getKey())
                              + ", want " + e.getValue() + ")")
                    .collect(Collectors.toList());
                CompatCell.check(wrong.isEmpty(), "exactly-once counts differ: " + String.join(", ", wrong));
                CompatCell.check(out.latest.keySet().equals(expected.keySet()), "unexpected words " + out.latest.keySet());
                return killed + "; all " + expected.size() + " counts exact (read_committed), " + out.updates + " updates";
            }
            List<String> under = expected.entrySet().stream().filter(e -> out.latest.get(e.getKey()) < e.getValue())
                .map(e -> e.getKey() + "=" + out.latest.get(e.getKey()) + " (want >= " + e.getValue() + ")")
                .collect(Collectors.toList());
            CompatCell.check(under.isEmpty(), "at-least-once counts too low: " + String.join(", ", under));
            long over = expected.entrySet().stream().filter(e -> out.latest.get(e.getKey()) > e.getValue()).count();
            long excess = expected.entrySet().stream().mapToLong(e -> out.latest.get(e.getKey()) - e.getValue()).sum();
            CompatCell.check(out.latest.keySet().equals(expected.keySet()), "unexpected words " + out.latest.keySet());
            return killed + "; counts >= exact and stable, " + over + " of " + expected.size()
                + " words over-counted by the replay (" + excess + " extra counts)";
        }
    }

    void cleanUp() {
        for (Process p : apps) {
            p.destroyForcibly();
            try {
                p.waitFor();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (System.getenv("COMPAT_KEEP_STREAMS_WORK") != null) {
            System.err.println("streams work dir kept: " + work);
            return;
        }
        try (Stream<Path> paths = Files.walk(work)) {
            paths.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
        } catch (IOException e) {
            System.err.println("could not remove " + work + ": " + e);
        }
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: StreamsCell SCENARIO BOOTSTRAP");
            System.exit(2);
        }
        String guarantee = switch (args[0]) {
            case "streams_wordcount_alos" -> "at_least_once";
            case "streams_wordcount_eos" -> "exactly_once_v2";
            default -> null;
        };
        if (guarantee == null) {
            CompatCell.report("na", NA);
            System.exit(0);
        }
        StreamsCell cell = new StreamsCell(args[1]);
        try {
            CompatCell.report("pass", cell.wordcount(guarantee));
        } catch (Throwable e) {
            e.printStackTrace();
            CompatCell.report("fail", CompatCell.firstLine(e));
        } finally {
            cell.cleanUp();
        }
        System.exit(0);
    }
}
