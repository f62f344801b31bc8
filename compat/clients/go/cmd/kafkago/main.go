// Command kafkago runs one compat scenario with segmentio/kafka-go:
// `kafkago SCENARIO BOOTSTRAP` prints one COMPAT-RESULT line.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	c "kbroker.local/compat/goclients/common"
)

const client = "kafka-go"

// transport serves Metadata requests from a cache (6 s by default); the scenarios create
// topics and poll for admin changes, so it refreshes often.
var transport = &kafka.Transport{MetadataTTL: 200 * time.Millisecond, ClientID: "kbroker-compat-kafka-go"}

func api(b string) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(b), Timeout: 20 * time.Second, Transport: transport}
}

func newTopic(b, scenario string, partitions int, configs []kafka.ConfigEntry) string {
	name := c.TopicName(client, scenario)
	ctx, cancel := c.Ctx(20 * time.Second)
	defer cancel()
	resp, err := api(b).CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs}}})
	c.Must(err, "CreateTopics")
	c.Must(resp.Errors[name], "CreateTopics "+name)
	return name
}

// writer is a synchronous Writer for topic; tweak adjusts it before use.
func writer(b, topic string, tweak func(*kafka.Writer)) *kafka.Writer {
	w := &kafka.Writer{Addr: kafka.TCP(b), Topic: topic, Transport: transport, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond,
		WriteBackoffMin: 50 * time.Millisecond, WriteBackoffMax: 500 * time.Millisecond}
	if tweak != nil {
		tweak(w)
	}
	return w
}

// writeErr names the first failed message's error: WriteErrors' own text only counts failures.
func writeErr(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("%d of %d messages failed, first: %w", we.Count(), len(we), e)
			}
		}
	}
	return err
}

// produce writes ms synchronously and returns them as completed (partition and offset set).
func produce(b, topic string, ms []kafka.Message, tweak func(*kafka.Writer)) []kafka.Message {
	var mu sync.Mutex
	var done []kafka.Message
	w := writer(b, topic, tweak)
	w.BatchSize = max(len(ms), 1)
	w.Completion = func(batch []kafka.Message, err error) {
		if err == nil {
			mu.Lock()
			done = append(done, batch...)
			mu.Unlock()
		}
	}
	defer w.Close()
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	c.Must(writeErr(w.WriteMessages(ctx, ms...)), "produce")
	return done
}

func values(vals [][]byte) []kafka.Message {
	out := make([]kafka.Message, len(vals))
	for i, v := range vals {
		out[i] = kafka.Message{Value: v}
	}
	return out
}

func partitionsOf(b, topic string) []int {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	md, err := api(b).Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	c.Must(err, "Metadata")
	for _, t := range md.Topics {
		if t.Name == topic {
			c.Must(t.Error, "metadata of "+topic)
			out := make([]int, 0, len(t.Partitions))
			for _, p := range t.Partitions {
				out = append(out, p.ID)
			}
			slices.Sort(out)
			return out
		}
	}
	c.Fatalf("topic %s not in metadata", topic)
	return nil
}

// consume reads n messages from the partitions at the given offsets with one partition Reader
// each; the result is ordered by partition, then offset.
func consume(b, topic string, at map[int]int64, n int, timeout time.Duration, tweak func(*kafka.ReaderConfig)) []kafka.Message {
	ctx, cancel := c.Ctx(timeout)
	defer cancel()
	merged := make(chan kafka.Message, n+64)
	errs := make(chan error, len(at))
	var wg sync.WaitGroup
	for p, off := range at {
		cfg := kafka.ReaderConfig{Brokers: []string{b}, Topic: topic, Partition: p, MaxWait: 200 * time.Millisecond}
		if tweak != nil {
			tweak(&cfg)
		}
		r := kafka.NewReader(cfg)
		c.Must(r.SetOffset(off), "SetOffset")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("partition %d: %w", p, err)
					}
					return
				}
				merged <- m
			}
		}()
	}
	var out []kafka.Message
loop:
	for len(out) < n {
		select {
		case m := <-merged:
			out = append(out, m)
		case e := <-errs:
			cancel()
			wg.Wait()
			c.Fatalf("consume: %v", e)
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	wg.Wait()
	slices.SortStableFunc(out, func(x, y kafka.Message) int {
		if x.Partition != y.Partition {
			return x.Partition - y.Partition
		}
		return int(x.Offset - y.Offset)
	})
	return out
}

func readAll(b, topic string, n int, partitions []int, timeout time.Duration, tweak func(*kafka.ReaderConfig)) []kafka.Message {
	if partitions == nil {
		partitions = partitionsOf(b, topic)
	}
	at := map[int]int64{}
	for _, p := range partitions {
		at[p] = kafka.FirstOffset
	}
	out := consume(b, topic, at, n, timeout, tweak)
	c.Check(len(out) >= n, "consumed %d of %d records", len(out), n)
	return out
}

func valuesOf(ms []kafka.Message) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m.Value
	}
	return out
}

// ---------------------------------------------------------------- scenarios

func metadata(b string) string {
	topic := newTopic(b, "metadata", 3, nil)
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	md, err := api(b).Metadata(ctx, &kafka.MetadataRequest{})
	c.Must(err, "Metadata")
	host, port, _ := net.SplitHostPort(b)
	p, _ := strconv.Atoi(port)
	ids := map[int]bool{}
	found := false
	for _, br := range md.Brokers {
		ids[br.ID] = true
		found = found || (br.Host == host && br.Port == p)
	}
	c.Check(found, "bootstrap broker not listed: %v", md.Brokers)
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		c.Must(t.Error, "topic in error")
		var nums []int
		for _, pt := range t.Partitions {
			nums = append(nums, pt.ID)
			c.Check(ids[pt.Leader.ID], "partition %d without a known leader (%d)", pt.ID, pt.Leader.ID)
		}
		slices.Sort(nums)
		c.Check(slices.Equal(nums, []int{0, 1, 2}), "partitions %v", nums)
		return ""
	}
	c.Fatalf("topic %s not listed", topic)
	return ""
}

func acks(scenario string, a kafka.RequiredAcks) c.Scenario {
	return func(b string) string {
		topic := newTopic(b, scenario, 1, nil)
		vals := c.Payloads(20, "m")
		produce(b, topic, values(vals), func(w *kafka.Writer) { w.RequiredAcks = a })
		got := readAll(b, topic, 20, nil, 20*time.Second, nil)
		c.Check(c.SameValues(valuesOf(got), vals), "records differ from what was produced")
		return ""
	}
}

func keysPartitioner(b string) string {
	topic := newTopic(b, "keys", 6, nil)
	vals := c.Payloads(60, "m")
	ms := values(vals)
	for i := range ms {
		ms[i].Key = []byte(fmt.Sprintf("key-%d", i%12))
	}
	// kafka-go's default balancer (RoundRobin) ignores keys; Murmur2Balancer is Java's default
	// partitioner for keyed records.
	done := produce(b, topic, ms, func(w *kafka.Writer) { w.Balancer = &kafka.Murmur2Balancer{} })
	c.Check(len(done) == 60, "%d of 60 messages reported written", len(done))
	where := map[string]map[int]bool{}
	parts := map[int]bool{}
	want := map[string]bool{}
	for _, m := range done {
		if where[string(m.Key)] == nil {
			where[string(m.Key)] = map[int]bool{}
		}
		where[string(m.Key)][m.Partition] = true
		parts[m.Partition] = true
		want[fmt.Sprintf("%s/%s/%d", m.Key, m.Value, m.Partition)] = true
	}
	c.Check(len(where) == 12, "%d keys", len(where))
	for k, ps := range where {
		c.Check(len(ps) == 1, "key %s went to partitions %v", k, ps)
	}
	c.Check(len(parts) > 1, "all keys in one partition")
	got := readAll(b, topic, 60, nil, 20*time.Second, nil)
	have := map[string]bool{}
	for _, m := range got {
		have[fmt.Sprintf("%s/%s/%d", m.Key, m.Value, m.Partition)] = true
	}
	c.Check(len(have) == len(want), "consumed key/partition differs")
	for k := range want {
		c.Check(have[k], "consumed key/partition differs: %s missing", k)
	}
	return "Murmur2Balancer"
}

func headers(b string) string {
	topic := newTopic(b, "headers", 1, nil)
	hs := []kafka.Header{{Key: "h1", Value: []byte("v1")}, {Key: "h2", Value: []byte{}}, {Key: "h1", Value: []byte("dup")}}
	produce(b, topic, []kafka.Message{{Value: []byte("with-headers"), Headers: hs}}, nil)
	got := readAll(b, topic, 1, nil, 20*time.Second, nil)[0].Headers
	c.Check(slices.EqualFunc(got, hs, func(x, y kafka.Header) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) }),
		"headers %v", got)
	return ""
}

// nullValues reads back with Client.Fetch: kafka-go's Reader (readNewBytes) turns both a null
// and an empty value into a nil slice, while the protocol-level Record keeps them apart.
func nullValues(b string) string {
	topic := newTopic(b, "null", 1, nil)
	produce(b, topic, []kafka.Message{{Key: []byte("k1"), Value: nil}, {Key: []byte("k2"), Value: []byte{}}}, nil)
	ctx, cancel := c.Ctx(20 * time.Second)
	defer cancel()
	resp, err := api(b).Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: 0, Offset: 0, MinBytes: 1,
		MaxBytes: 1 << 20, MaxWait: time.Second})
	c.Must(err, "Fetch")
	c.Must(resp.Error, "Fetch partition 0")
	// ReadRecord reuses one Record, so keep what matters of each as it is read.
	type rec struct {
		key         string
		null        bool
		valueLength int
	}
	var recs []rec
	for {
		r, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		c.Must(err, "ReadRecord")
		k, err := kafka.ReadAll(r.Key)
		c.Must(err, "read key")
		recs = append(recs, rec{key: string(k), null: r.Value == nil, valueLength: lenOf(r.Value)})
	}
	c.Check(len(recs) == 2, "fetched %d records", len(recs))
	c.Check(recs[0].null && recs[0].key == "k1", "tombstone read as a %d-byte value", recs[0].valueLength)
	c.Check(!recs[1].null && recs[1].valueLength == 0 && recs[1].key == "k2", "empty value read as null")
	return "read back with Client.Fetch: the Reader returns nil for null and empty alike"
}

func lenOf(b kafka.Bytes) int {
	if b == nil {
		return -1
	}
	return b.Len()
}

func compression(codec string) c.Scenario {
	codecs := map[string]kafka.Compression{"gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd}
	return func(b string) string {
		topic := newTopic(b, "compression-"+codec, 1, nil)
		vals := c.Payloads(50, "m")
		for i := range vals {
			vals[i] = bytes.Repeat(vals[i], 20)
		}
		produce(b, topic, values(vals), func(w *kafka.Writer) {
			w.Compression = codecs[codec]
			w.BatchTimeout = 50 * time.Millisecond
		})
		got := readAll(b, topic, 50, nil, 20*time.Second, nil)
		c.Check(c.SameValues(valuesOf(got), vals), "records differ")
		return ""
	}
}

// toPartition sends each message to its Message.Partition (kafka-go's Writer has no manual partitioner).
var toPartition = kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition })

func consumeAssign(b string) string {
	topic := newTopic(b, "assign", 3, nil)
	vals := c.Payloads(10, "m")
	ms := values(vals)
	for i := range ms {
		ms[i].Partition = 1
	}
	produce(b, topic, ms, func(w *kafka.Writer) { w.Balancer = toPartition })
	got := consume(b, topic, map[int]int64{1: 5}, 5, 20*time.Second, nil)
	c.Check(len(got) == 5, "got %d records", len(got))
	for i, m := range got {
		c.Check(m.Partition == 1 && m.Offset == int64(5+i) && bytes.Equal(m.Value, vals[5+i]),
			"record %d: partition %d offset %d value %q", i, m.Partition, m.Offset, m.Value)
	}
	return ""
}

func consumeTimestamp(b string) string {
	topic := newTopic(b, "timestamp", 1, nil)
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	ms := make([]kafka.Message, 5)
	for i := range ms {
		ms[i] = kafka.Message{Value: []byte(fmt.Sprintf("t%d", i)), Time: time.UnixMilli(t0 + int64(i)*1000)}
	}
	produce(b, topic, ms, nil)
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	resp, err := api(b).ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.TimeOffsetOf(0, time.UnixMilli(t0+1500))}}})
	c.Must(err, "ListOffsets")
	pos := resp.Topics[topic]
	c.Check(len(pos) == 1, "ListOffsets answered %v", resp.Topics)
	c.Must(pos[0].Error, "ListOffsets partition 0")
	var off int64 = -1
	for o := range pos[0].Offsets {
		off = o
	}
	c.Check(len(pos[0].Offsets) == 1 && off == 2, "offsets for timestamp %v", pos[0].Offsets)
	got := consume(b, topic, map[int]int64{0: off}, 1, 20*time.Second, nil)
	c.Check(len(got) > 0 && string(got[0].Value) == "t2" && got[0].Time.UnixMilli() == t0+2000, "wrong first record %v", got)
	return ""
}

// member is one kafka-go ConsumerGroup member; each generation's partitions are read by
// partition Readers started on the generation, so they stop when it ends.
type member struct {
	cg   *kafka.ConsumerGroup
	mu   sync.Mutex
	held []int
	seen map[string]bool
	errs []error
	done chan struct{}
}

func (m *member) fail(err error) {
	m.mu.Lock()
	m.errs = append(m.errs, err)
	m.mu.Unlock()
}

func join(ctx context.Context, b, g, topic string, balancer kafka.GroupBalancer) *member {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{ID: g, Brokers: []string{b}, Topics: []string{topic},
		GroupBalancers: []kafka.GroupBalancer{balancer}, HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: 200 * time.Millisecond,
		StartOffset: kafka.FirstOffset})
	c.Must(err, "NewConsumerGroup")
	m := &member{cg: cg, seen: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			gen, err := cg.Next(ctx)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
					return
				}
				// Next reports join/sync errors (e.g. REBALANCE_IN_PROGRESS when the other
				// member joins mid-sync) and keeps going; the next call retries.
				m.fail(err)
				continue
			}
			var held []int
			for _, pa := range gen.Assignments[topic] {
				held = append(held, pa.ID)
				p, off := pa.ID, pa.Offset
				gen.Start(func(gctx context.Context) {
					r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b}, Topic: topic, Partition: p, MaxWait: 200 * time.Millisecond})
					defer r.Close()
					if err := r.SetOffset(off); err != nil {
						m.fail(err)
						return
					}
					for {
						msg, err := r.ReadMessage(gctx)
						if err != nil {
							return
						}
						m.mu.Lock()
						m.seen[string(msg.Value)] = true
						m.mu.Unlock()
					}
				})
			}
			slices.Sort(held)
			m.mu.Lock()
			m.held = held
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *member) state() ([]int, map[string]bool, []error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.held), m.seen, slices.Clone(m.errs)
}

func group(scenario string, balancer kafka.GroupBalancer) c.Scenario {
	return func(b string) string {
		topic := newTopic(b, scenario, 4, nil)
		vals := c.Payloads(40, "m")
		ms := values(vals)
		for i := range ms {
			ms[i].Key = []byte(strconv.Itoa(i))
		}
		produce(b, topic, ms, func(w *kafka.Writer) { w.Balancer = &kafka.Murmur2Balancer{} })
		g := c.GroupName(client, scenario)
		ctx, cancel := context.WithCancel(context.Background())
		members := []*member{join(ctx, b, g, topic, balancer), join(ctx, b, g, topic, balancer)}
		defer func() {
			cancel()
			for _, m := range members {
				_ = m.cg.Close()
				<-m.done
			}
		}()
		var a0, a1 []int
		var errs []error
		balanced := func() bool {
			seen := map[string]bool{}
			errs = nil
			for i, m := range members {
				held, s, e := m.state()
				errs = append(errs, e...)
				if i == 0 {
					a0 = held
				} else {
					a1 = held
				}
				m.mu.Lock()
				for k := range s {
					seen[k] = true
				}
				m.mu.Unlock()
			}
			all := append(slices.Clone(a0), a1...)
			slices.Sort(all)
			return len(a0) > 0 && len(a1) > 0 && slices.Equal(all, []int{0, 1, 2, 3}) && len(seen) == 40
		}
		deadline := time.Now().Add(45 * time.Second)
		for !balanced() {
			if time.Now().After(deadline) {
				c.Fatalf("no balanced 2-member group that consumed all 40 records; assignment %v / %v, group errors %v", a0, a1, errs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		note := ""
		if len(errs) > 0 {
			first := errs[0].Error()
			var ke kafka.Error
			if errors.As(errs[0], &ke) {
				first = fmt.Sprintf("%d %s", int(ke), ke.Title())
			}
			note = fmt.Sprintf("; %d group error(s) retried, first: %s", len(errs), first)
		}
		return c.Assignment(a0, a1) + note
	}
}

func committedOffset(b, g, topic string) int64 {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	resp, err := api(b).OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g, Topics: map[string][]int{topic: {0}}})
	c.Must(err, "OffsetFetch")
	c.Must(resp.Error, "OffsetFetch")
	ps := resp.Topics[topic]
	c.Check(len(ps) == 1, "OffsetFetch answered %v", resp.Topics)
	c.Must(ps[0].Error, "OffsetFetch partition 0")
	return ps[0].CommittedOffset
}

func groupReader(b, g, topic string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b}, GroupID: g, Topic: topic, StartOffset: kafka.FirstOffset,
		MaxWait: 200 * time.Millisecond, HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 10 * time.Second,
		JoinGroupBackoff: 200 * time.Millisecond})
}

func commitResume(b string) string {
	topic := newTopic(b, "commit", 1, nil)
	vals := c.Payloads(10, "m")
	produce(b, topic, values(vals), nil)
	g := c.GroupName(client, "commit")
	r := groupReader(b, g, topic)
	ctx, cancel := c.Ctx(40 * time.Second)
	defer cancel()
	var last kafka.Message
	for i := 0; i < 4; i++ {
		m, err := r.FetchMessage(ctx)
		c.Must(err, fmt.Sprintf("first consumer, record %d", i))
		last = m
	}
	c.Check(last.Offset == 3, "fourth record at offset %d", last.Offset)
	c.Must(r.CommitMessages(ctx, last), "CommitMessages") // commits offset 4, the next to read
	got := committedOffset(b, g, topic)
	c.Check(got == 4, "committed offset = %d", got)
	c.Must(r.Close(), "close reader")
	r = groupReader(b, g, topic)
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	c.Must(err, "resumed consumer")
	c.Check(m.Offset == 4 && bytes.Equal(m.Value, vals[4]), "resumed at offset %d", m.Offset)
	return ""
}

func idempotentProducer(string) string {
	c.NA("kafka-go has no idempotent producer: its Writer always writes record batches with producer id -1 " +
		"and never sends InitProducerId")
	return ""
}

func transactions(string) string {
	c.NA("kafka-go has no transactional producer: InitProducerID/AddPartitionsToTxn/EndTxn exist only as raw " +
		"requests and its record encoder always writes producer id -1")
	return ""
}

func topicListed(b, name string) bool {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	md, err := api(b).Metadata(ctx, &kafka.MetadataRequest{})
	c.Must(err, "Metadata")
	for _, t := range md.Topics {
		if t.Name == name {
			return true
		}
	}
	return false
}

func adminTopics(b string) string {
	name := c.TopicName(client, "admin-topics")
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	cr, err := api(b).CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: 2, ReplicationFactor: 1}}})
	c.Must(err, "CreateTopics")
	c.Must(cr.Errors[name], "CreateTopics "+name)
	c.Check(topicListed(b, name), "created topic not listed")
	dr, err := api(b).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	c.Must(err, "DeleteTopics")
	c.Must(dr.Errors[name], "DeleteTopics "+name)
	c.WaitUntil(10*time.Second, "deleted topic to disappear", 200*time.Millisecond, func() bool { return !topicListed(b, name) })
	return ""
}

func adminPartitions(b string) string {
	topic := newTopic(b, "admin-partitions", 1, nil)
	ctx, cancel := c.Ctx(20 * time.Second)
	defer cancel()
	resp, err := api(b).CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: 3}}})
	c.Must(err, "CreatePartitions")
	c.Must(resp.Errors[topic], "CreatePartitions "+topic)
	c.WaitUntil(10*time.Second, "3 partitions in metadata", 200*time.Millisecond, func() bool { return len(partitionsOf(b, topic)) == 3 })
	produce(b, topic, []kafka.Message{{Partition: 2, Value: []byte("p2")}}, func(w *kafka.Writer) { w.Balancer = toPartition })
	return ""
}

func configValue(b string, rt kafka.ResourceType, name, key string) string {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	resp, err := api(b).DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: rt, ResourceName: name}}})
	c.Must(err, "DescribeConfigs")
	c.Check(len(resp.Resources) == 1, "%d resources described", len(resp.Resources))
	c.Must(resp.Resources[0].Error, "DescribeConfigs "+name)
	for _, e := range resp.Resources[0].ConfigEntries {
		if e.ConfigName == key {
			return e.ConfigValue
		}
	}
	c.Fatalf("%s not in the describe configs response", key)
	return ""
}

func adminConfigs(b string) string {
	topic := newTopic(b, "admin-configs", 1, []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "3600000"}})
	got := configValue(b, kafka.ResourceTypeTopic, topic, "retention.ms")
	c.Check(got == "3600000", "retention.ms = %s", got)
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	resp, err := api(b).IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "retention.ms", Value: "12345", ConfigOperation: kafka.ConfigOperationSet}}}}})
	c.Must(err, "IncrementalAlterConfigs")
	for _, r := range resp.Resources {
		c.Must(r.Error, "IncrementalAlterConfigs "+r.ResourceName)
	}
	// Kafka applies an alter through its metadata log: a describe right after may still
	// show the old value for a moment.
	c.WaitUntil(10*time.Second, "retention.ms = 12345 after the alter", 100*time.Millisecond, func() bool {
		got = configValue(b, kafka.ResourceTypeTopic, topic, "retention.ms")
		return got == "12345"
	})
	md, err := api(b).Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	c.Must(err, "Metadata")
	c.Check(len(md.Brokers) > 0, "no broker in metadata")
	got = configValue(b, kafka.ResourceTypeBroker, strconv.Itoa(md.Brokers[0].ID), "num.partitions")
	c.Check(got != "", "broker num.partitions has no value")
	return ""
}

func groupListed(b, g string) bool {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	resp, err := api(b).ListGroups(ctx, &kafka.ListGroupsRequest{})
	c.Must(err, "ListGroups")
	c.Must(resp.Error, "ListGroups")
	for _, lg := range resp.Groups {
		if lg.GroupID == g {
			return true
		}
	}
	return false
}

func adminGroups(b string) string {
	topic := newTopic(b, "admin-groups", 1, nil)
	produce(b, topic, values([][]byte{[]byte("x")}), nil)
	g := c.GroupName(client, "admin-groups")
	r := groupReader(b, g, topic)
	ctx, cancel := c.Ctx(40 * time.Second)
	defer cancel()
	m, err := r.FetchMessage(ctx)
	c.Must(err, "group consumer")
	c.Must(r.CommitMessages(ctx, m), "CommitMessages")
	c.Must(r.Close(), "close reader")
	c.Check(groupListed(b, g), "group not listed")
	dg, err := api(b).DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{g}})
	c.Must(err, "DescribeGroups")
	c.Check(len(dg.Groups) == 1 && dg.Groups[0].Error == nil && dg.Groups[0].GroupState == "Empty", "described %+v", dg.Groups)
	dr, err := api(b).DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{g}})
	c.Must(err, "DeleteGroups")
	c.Must(dr.Errors[g], "DeleteGroups "+g)
	c.WaitUntil(10*time.Second, "deleted group to disappear", 200*time.Millisecond, func() bool { return !groupListed(b, g) })
	return ""
}

func largeMessages(b string) string {
	topic := newTopic(b, "large", 1, nil)
	big := c.LargeValue(c.LargeSize)
	// Raise the client-side limit so the broker, not the client, judges the size.
	big4 := func(w *kafka.Writer) {
		w.BatchBytes = 4 << 20
		w.BatchTimeout = time.Millisecond
	}
	produce(b, topic, values([][]byte{big}), big4)
	got := readAll(b, topic, 1, nil, 20*time.Second, func(cfg *kafka.ReaderConfig) { cfg.MaxBytes = 4 << 20 })
	c.Check(bytes.Equal(got[0].Value, big), "large value differs")
	w := writer(b, topic, big4)
	w.MaxAttempts = 1
	defer w.Close()
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	err := w.WriteMessages(ctx, kafka.Message{Value: c.LargeValue(c.OverSize)})
	c.Check(err != nil, "broker accepted a record over max.message.bytes")
	err = writeErr(err)
	c.Check(errors.Is(err, kafka.MessageSizeTooLarge), "rejected with %v", err)
	return ""
}

func manyPartitions(b string) string {
	topic := newTopic(b, "many", 64, nil)
	ms := make([]kafka.Message, 64)
	all := make([]int, 64)
	for i := range ms {
		ms[i] = kafka.Message{Partition: i, Value: []byte(fmt.Sprintf("p%d", i))}
		all[i] = i
	}
	produce(b, topic, ms, func(w *kafka.Writer) {
		w.Balancer = toPartition
		w.BatchTimeout = 20 * time.Millisecond
	})
	got := readAll(b, topic, 64, all, 30*time.Second, nil)
	seen := map[int]string{}
	for _, m := range got {
		seen[m.Partition] = string(m.Value)
	}
	c.Check(len(got) == 64 && len(seen) == 64, "read %d records from %d partitions", len(got), len(seen))
	for p, v := range seen {
		c.Check(v == fmt.Sprintf("p%d", p), "partition %d holds %q", p, v)
	}
	return ""
}

func na(reason string) c.Scenario {
	return func(string) string {
		c.NA("%s", reason)
		return ""
	}
}

// ---------------------------------------------------------------- security

// mechanism is kafka-go's own SASL mechanism for a login (sasl/plain, sasl/scram).
func mechanism(l c.Login) sasl.Mechanism {
	switch l.Mechanism {
	case "PLAIN":
		return plain.Mechanism{Username: l.User, Password: l.Password}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if l.Mechanism == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, l.User, l.Password)
		c.Must(err, "scram.Mechanism")
		return m
	case "OAUTHBEARER":
		c.NA("kafka-go ships no OAUTHBEARER mechanism (only sasl/plain and sasl/scram)")
	}
	return nil
}

// secTransport is the writer's transport for a login (TLS and SASL).
func secTransport(l c.Login) *kafka.Transport {
	return &kafka.Transport{MetadataTTL: 200 * time.Millisecond, ClientID: "kbroker-compat-kafka-go",
		TLS: l.TLSConfig(), SASL: mechanism(l)}
}

// secRoundtrip creates a topic over PLAINTEXT, then produces and reads back over the login's listener.
func secRoundtrip(b, scenario string, l c.Login) string {
	topic := newTopic(b, scenario, 2, nil)
	vals := c.Payloads(10, "sec")
	ms := make([]kafka.Message, len(vals))
	for i, v := range vals {
		ms[i] = kafka.Message{Value: v}
	}
	produce(l.Bootstrap, topic, ms, func(w *kafka.Writer) { w.Transport = secTransport(l) })
	got := valuesOf(readAll(l.Bootstrap, topic, 10, []int{0, 1}, 20*time.Second, func(rc *kafka.ReaderConfig) {
		rc.Dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: l.TLSConfig(), SASLMechanism: mechanism(l)}
	}))
	slices.SortFunc(got, bytes.Compare)
	c.Check(c.SameValues(got, vals), "records read back differ")
	return "10 records over " + l.Label()
}

// secRefused dials the broker as the login: kafka-go reports the broker's SASL error, or the
// TLS failure (handshake, or the broker's alert right after it under TLS 1.3).
func secRefused(_, _ string, l c.Login) (error, bool) {
	ctx, cancel := c.Ctx(15 * time.Second)
	defer cancel()
	d := &kafka.Dialer{Timeout: 10 * time.Second, TLS: l.TLSConfig(), SASLMechanism: mechanism(l)}
	conn, err := d.DialContext(ctx, "tcp", l.Bootstrap)
	if err == nil {
		// Under TLS 1.3 the broker's verdict on the certificate comes after the handshake.
		_, err = conn.ReadPartitions()
		conn.Close()
		if err == nil {
			return nil, false
		}
	}
	if l.SASL() {
		return err, errors.Is(err, kafka.SASLAuthenticationFailed)
	}
	var alert tls.AlertError
	return err, errors.As(err, &alert) || strings.Contains(err.Error(), "tls:")
}

func main() {
	s := map[string]c.Scenario{
		"metadata":                 metadata,
		"produce_acks0":            acks("produce_acks0", kafka.RequireNone),
		"produce_acks1":            acks("produce_acks1", kafka.RequireOne),
		"produce_acksall":          acks("produce_acksall", kafka.RequireAll),
		"keys_partitioner":         keysPartitioner,
		"headers":                  headers,
		"null_values":              nullValues,
		"consume_assign":           consumeAssign,
		"consume_timestamp":        consumeTimestamp,
		"group_range":              group("group_range", kafka.RangeGroupBalancer{}),
		"group_roundrobin":         group("group_roundrobin", kafka.RoundRobinGroupBalancer{}),
		"group_sticky":             na("kafka-go ships range, round-robin and rack-affinity group balancers (no sticky)"),
		"group_cooperative_sticky": na("kafka-go ships range, round-robin and rack-affinity group balancers and only eager rebalancing (no cooperative-sticky)"),
		"commit_resume":            commitResume,
		"idempotent_producer":      idempotentProducer,
		"transactions":             transactions,
		"txn_abort_multi":          transactions,
		"txn_read_committed":       transactions,
		"txn_read_uncommitted":     transactions,
		"txn_send_offsets":         transactions,
		"admin_topics":             adminTopics,
		"admin_partitions":         adminPartitions,
		"admin_configs":            adminConfigs,
		"admin_groups":             adminGroups,
		"large_messages":           largeMessages,
		"many_partitions":          manyPartitions,
	}
	for _, codec := range c.Codecs {
		s["compression_"+codec] = compression(codec)
	}
	c.SecScenarios(s, secRoundtrip, secRefused)
	c.Main(client, s)
}
