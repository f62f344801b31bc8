// Command sarama runs one compat scenario with IBM/sarama:
// `sarama SCENARIO BOOTSTRAP` prints one COMPAT-RESULT line.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	c "kbroker.local/compat/goclients/common"
)

const client = "sarama"

// config is the base configuration: the newest Kafka version sarama knows that the reference
// broker runs (request versions are then capped by the broker's ApiVersions answer).
func config() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_1_0_0
	cfg.ClientID = "kbroker-compat-sarama"
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	// Right after CreateTopics, Kafka may answer NOT_LEADER_OR_FOLLOWER for a while.
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 200 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	return cfg
}

func admin(b string) sarama.ClusterAdmin {
	a, err := sarama.NewClusterAdmin([]string{b}, config())
	c.Must(err, "NewClusterAdmin")
	return a
}

func newTopic(b, scenario string, partitions int32, configs map[string]*string) string {
	name := c.TopicName(client, scenario)
	a := admin(b)
	defer a.Close()
	c.Must(a.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs}, false),
		"CreateTopic "+name)
	return name
}

func msgs(topic string, vals [][]byte) []*sarama.ProducerMessage {
	out := make([]*sarama.ProducerMessage, len(vals))
	for i, v := range vals {
		out[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(v)}
	}
	return out
}

// produce sends ms with a SyncProducer configured by tweak; partitions and offsets are filled in.
func produce(b string, ms []*sarama.ProducerMessage, tweak func(*sarama.Config)) {
	cfg := config()
	if tweak != nil {
		tweak(cfg)
	}
	p, err := sarama.NewSyncProducer([]string{b}, cfg)
	c.Must(err, "NewSyncProducer")
	defer p.Close()
	c.Must(sendErr(p.SendMessages(ms)), "produce")
}

// sendErr names the first failed message's error: sarama's own text only counts failures.
func sendErr(err error) error {
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) && len(pes) > 0 {
		return fmt.Errorf("%d messages failed, first: %w", len(pes), pes[0].Err)
	}
	return err
}

// readPartitions reads n messages from the start of partitions (all when nil).
func readAll(b, topic string, n int, partitions []int32, timeout time.Duration, tweak func(*sarama.Config)) []*sarama.ConsumerMessage {
	cfg := config()
	if tweak != nil {
		tweak(cfg)
	}
	cl, err := sarama.NewClient([]string{b}, cfg)
	c.Must(err, "NewClient")
	defer cl.Close()
	if partitions == nil {
		partitions, err = cl.Partitions(topic)
		c.Must(err, "Partitions")
	}
	at := map[int32]int64{}
	for _, p := range partitions {
		at[p] = sarama.OffsetOldest
	}
	out := consume(cl, topic, at, n, timeout)
	c.Check(len(out) >= n, "consumed %d of %d records", len(out), n)
	return out
}

// consume reads n messages from the partitions at the given offsets, in per-partition order,
// partitions in ascending order.
func consume(cl sarama.Client, topic string, at map[int32]int64, n int, timeout time.Duration) []*sarama.ConsumerMessage {
	cons, err := sarama.NewConsumerFromClient(cl)
	c.Must(err, "NewConsumer")
	defer cons.Close()
	merged := make(chan *sarama.ConsumerMessage, n+64)
	errs := make(chan error, 64)
	for p, off := range at {
		pc, err := cons.ConsumePartition(topic, p, off)
		c.Must(err, fmt.Sprintf("ConsumePartition %d", p))
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				merged <- m
			}
		}()
		go func() {
			for e := range pc.Errors() {
				errs <- e
			}
		}()
	}
	var out []*sarama.ConsumerMessage
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case m := <-merged:
			out = append(out, m)
		case e := <-errs:
			c.Fatalf("consume: %v", e)
		case <-deadline:
			return out
		}
	}
	slices.SortStableFunc(out, func(x, y *sarama.ConsumerMessage) int {
		if x.Partition != y.Partition {
			return int(x.Partition - y.Partition)
		}
		return int(x.Offset - y.Offset)
	})
	return out
}

func valuesOf(ms []*sarama.ConsumerMessage) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m.Value
	}
	return out
}

// ---------------------------------------------------------------- scenarios

func metadata(b string) string {
	topic := newTopic(b, "metadata", 3, nil)
	cl, err := sarama.NewClient([]string{b}, config())
	c.Must(err, "NewClient")
	defer cl.Close()
	c.Must(cl.RefreshMetadata(topic), "RefreshMetadata")
	found := false
	ids := map[int32]bool{}
	for _, br := range cl.Brokers() {
		ids[br.ID()] = true
		found = found || br.Addr() == b
	}
	c.Check(found, "bootstrap broker not listed")
	ps, err := cl.Partitions(topic)
	c.Must(err, "Partitions")
	slices.Sort(ps)
	c.Check(slices.Equal(ps, []int32{0, 1, 2}), "partitions %v", ps)
	for _, p := range ps {
		l, err := cl.Leader(topic, p)
		c.Must(err, fmt.Sprintf("Leader of %d", p))
		c.Check(ids[l.ID()], "partition %d without a known leader", p)
	}
	return ""
}

func acks(scenario string, a sarama.RequiredAcks) c.Scenario {
	return func(b string) string {
		topic := newTopic(b, scenario, 1, nil)
		vals := c.Payloads(20, "m")
		produce(b, msgs(topic, vals), func(cfg *sarama.Config) { cfg.Producer.RequiredAcks = a })
		got := readAll(b, topic, 20, nil, 20*time.Second, nil)
		c.Check(c.SameValues(valuesOf(got), vals), "records differ from what was produced")
		return ""
	}
}

func keysPartitioner(b string) string {
	topic := newTopic(b, "keys", 6, nil)
	vals := c.Payloads(60, "m")
	ms := msgs(topic, vals)
	for i, m := range ms {
		m.Key = sarama.StringEncoder(fmt.Sprintf("key-%d", i%12))
	}
	produce(b, ms, nil) // default: sarama's hash partitioner (FNV-1a of the key)
	where := map[string]map[int32]bool{}
	parts := map[int32]bool{}
	want := map[string]bool{}
	for i, m := range ms {
		k := fmt.Sprintf("key-%d", i%12)
		if where[k] == nil {
			where[k] = map[int32]bool{}
		}
		where[k][m.Partition] = true
		parts[m.Partition] = true
		want[fmt.Sprintf("%s/%s/%d", k, vals[i], m.Partition)] = true
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
	return ""
}

func headers(b string) string {
	topic := newTopic(b, "headers", 1, nil)
	hs := []sarama.RecordHeader{{Key: []byte("h1"), Value: []byte("v1")}, {Key: []byte("h2"), Value: []byte{}},
		{Key: []byte("h1"), Value: []byte("dup")}}
	produce(b, []*sarama.ProducerMessage{{Topic: topic, Value: sarama.StringEncoder("with-headers"), Headers: hs}}, nil)
	got := readAll(b, topic, 1, nil, 20*time.Second, nil)[0].Headers
	c.Check(slices.EqualFunc(got, hs, func(x *sarama.RecordHeader, y sarama.RecordHeader) bool {
		return bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Value, y.Value)
	}), "headers %v", got)
	return ""
}

func nullValues(b string) string {
	topic := newTopic(b, "null", 1, nil)
	produce(b, []*sarama.ProducerMessage{
		{Topic: topic, Key: sarama.StringEncoder("k1"), Value: nil},
		{Topic: topic, Key: sarama.StringEncoder("k2"), Value: sarama.ByteEncoder([]byte{})},
	}, nil)
	got := readAll(b, topic, 2, nil, 20*time.Second, nil)
	c.Check(got[0].Value == nil && string(got[0].Key) == "k1", "tombstone read as %q (nil: %v)", got[0].Value, got[0].Value == nil)
	c.Check(got[1].Value != nil && len(got[1].Value) == 0 && string(got[1].Key) == "k2",
		"empty value read as %q (nil: %v)", got[1].Value, got[1].Value == nil)
	return ""
}

func compression(codec string) c.Scenario {
	codecs := map[string]sarama.CompressionCodec{"gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
		"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD}
	return func(b string) string {
		topic := newTopic(b, "compression-"+codec, 1, nil)
		vals := c.Payloads(50, "m")
		for i := range vals {
			vals[i] = bytes.Repeat(vals[i], 20)
		}
		produce(b, msgs(topic, vals), func(cfg *sarama.Config) {
			cfg.Producer.Compression = codecs[codec]
			cfg.Producer.Flush.Frequency = 50 * time.Millisecond
		})
		got := readAll(b, topic, 50, nil, 20*time.Second, nil)
		c.Check(c.SameValues(valuesOf(got), vals), "records differ")
		return ""
	}
}

func consumeAssign(b string) string {
	topic := newTopic(b, "assign", 3, nil)
	vals := c.Payloads(10, "m")
	ms := msgs(topic, vals)
	for _, m := range ms {
		m.Partition = 1
	}
	produce(b, ms, func(cfg *sarama.Config) { cfg.Producer.Partitioner = sarama.NewManualPartitioner })
	cl, err := sarama.NewClient([]string{b}, config())
	c.Must(err, "NewClient")
	defer cl.Close()
	got := consume(cl, topic, map[int32]int64{1: 5}, 5, 20*time.Second)
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
	ms := make([]*sarama.ProducerMessage, 5)
	for i := range ms {
		ms[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("t%d", i)),
			Timestamp: time.UnixMilli(t0 + int64(i)*1000)}
	}
	produce(b, ms, nil)
	cl, err := sarama.NewClient([]string{b}, config())
	c.Must(err, "NewClient")
	defer cl.Close()
	off, err := cl.GetOffset(topic, 0, t0+1500)
	c.Must(err, "GetOffset(timestamp)")
	c.Check(off == 2, "offset for timestamp = %d", off)
	got := consume(cl, topic, map[int32]int64{0: off}, 1, 20*time.Second)
	c.Check(len(got) > 0 && string(got[0].Value) == "t2" && got[0].Timestamp.UnixMilli() == t0+2000,
		"wrong first record %v", got)
	return ""
}

// handler consumes claims, tracking the partitions this member currently holds: a claim is
// held while its ConsumeClaim runs (eager rebalances end all claims, cooperative ones only the
// revoked).
type handler struct {
	mu      sync.Mutex
	held    map[int32]bool
	seen    map[string]bool
	records []*sarama.ConsumerMessage
}

func newHandler() *handler { return &handler{held: map[int32]bool{}, seen: map[string]bool{}} }

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	h.mu.Lock()
	h.held[claim.Partition()] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.held, claim.Partition())
		h.mu.Unlock()
	}()
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.seen[string(m.Value)] = true
			h.records = append(h.records, m)
			h.mu.Unlock()
		case <-sess.Context().Done():
			return nil
		}
	}
}

func (h *handler) partitions() []int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]int32, 0, len(h.held))
	for p := range h.held {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (h *handler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.records)
}

// member runs a consumer group member on topic until stop is called; errs collects the group's errors.
type member struct {
	cg   sarama.ConsumerGroup
	h    *handler
	stop func()
	done chan struct{}
	mu   sync.Mutex
	errs []error
}

func join(b, g, topic string, tweak func(*sarama.Config)) *member {
	cfg := config()
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	if tweak != nil {
		tweak(cfg)
	}
	cg, err := sarama.NewConsumerGroup([]string{b}, g, cfg)
	c.Must(err, "NewConsumerGroup")
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{cg: cg, h: newHandler(), stop: cancel, done: make(chan struct{})}
	go func() {
		for e := range cg.Errors() {
			m.mu.Lock()
			m.errs = append(m.errs, e)
			m.mu.Unlock()
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, m.h); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					return
				}
				m.mu.Lock()
				m.errs = append(m.errs, err)
				m.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return m
}

func (m *member) close() {
	m.stop()
	<-m.done
	_ = m.cg.Close()
}

func (m *member) firstErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) > 0 {
		return m.errs[0]
	}
	return nil
}

func group(scenario string, strategy func() sarama.BalanceStrategy) c.Scenario {
	return func(b string) string {
		topic := newTopic(b, scenario, 4, nil)
		vals := c.Payloads(40, "m")
		ms := msgs(topic, vals)
		for i, m := range ms {
			m.Key = sarama.StringEncoder(strconv.Itoa(i))
		}
		produce(b, ms, nil)
		g := c.GroupName(client, scenario)
		tweak := func(cfg *sarama.Config) {
			cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy()}
		}
		members := []*member{join(b, g, topic, tweak), join(b, g, topic, tweak)}
		defer func() {
			for _, m := range members {
				m.close()
			}
		}()
		c.WaitUntil(45*time.Second, "a balanced 2-member group that consumed all 40 records", 50*time.Millisecond, func() bool {
			for _, m := range members {
				c.Must(m.firstErr(), "consumer group")
			}
			a0, a1 := members[0].h.partitions(), members[1].h.partitions()
			all := append(slices.Clone(a0), a1...)
			slices.Sort(all)
			seen := map[string]bool{}
			for _, m := range members {
				m.h.mu.Lock()
				for k := range m.h.seen {
					seen[k] = true
				}
				m.h.mu.Unlock()
			}
			return len(a0) > 0 && len(a1) > 0 && slices.Equal(all, []int32{0, 1, 2, 3}) && len(seen) == 40
		})
		return c.Assignment(members[0].h.partitions(), members[1].h.partitions())
	}
}

func committed(b, g, topic string) int64 {
	a := admin(b)
	defer a.Close()
	resp, err := a.ListConsumerGroupOffsets(g, map[string][]int32{topic: {0}})
	c.Must(err, "ListConsumerGroupOffsets")
	c.Check(resp.Err == sarama.ErrNoError, "ListConsumerGroupOffsets: %v", resp.Err)
	blk := resp.GetBlock(topic, 0)
	c.Check(blk != nil, "no committed offset block")
	c.Check(blk.Err == sarama.ErrNoError, "committed offset error %v", blk.Err)
	return blk.Offset
}

// commitSession commits offset (the next to read) of partition 0 through a group session.
type commitSession struct {
	handler
	offset int64
	after  chan struct{}
	once   sync.Once
}

func (h *commitSession) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	n := 0
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.records = append(h.records, m)
			h.mu.Unlock()
			n++
			if n == 4 {
				sess.MarkOffset(claim.Topic(), claim.Partition(), h.offset, "")
				sess.Commit()
				h.once.Do(func() { close(h.after) })
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func commitResume(b string) string {
	topic := newTopic(b, "commit", 1, nil)
	vals := c.Payloads(10, "m")
	produce(b, msgs(topic, vals), nil)
	g := c.GroupName(client, "commit")
	cfg := config()
	cg, err := sarama.NewConsumerGroup([]string{b}, g, cfg)
	c.Must(err, "NewConsumerGroup")
	h := &commitSession{handler: *newHandler(), offset: 4, after: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cg.Consume(ctx, []string{topic}, h) }()
	select {
	case <-h.after:
	case err := <-cg.Errors():
		c.Fatalf("consumer group: %v", err)
	case err := <-done:
		c.Fatalf("Consume returned before 4 records: %v", err)
	case <-time.After(30 * time.Second):
		c.Fatalf("first consumer read %d records", h.count())
	}
	got := committed(b, g, topic)
	c.Check(got == 4, "committed offset = %d", got)
	cancel()
	<-done
	c.Must(cg.Close(), "close group")

	m := join(b, g, topic, nil)
	defer m.close()
	c.WaitUntil(30*time.Second, "a record in the resumed consumer", 50*time.Millisecond, func() bool {
		c.Must(m.firstErr(), "consumer group")
		return m.h.count() > 0
	})
	m.h.mu.Lock()
	first := m.h.records[0]
	m.h.mu.Unlock()
	c.Check(first.Offset == 4 && bytes.Equal(first.Value, vals[4]), "resumed at offset %d", first.Offset)
	return ""
}

func idempotent(cfg *sarama.Config) {
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
}

func idempotentProducer(b string) string {
	topic := newTopic(b, "idempotent", 1, nil)
	vals := c.Payloads(10, "m")
	produce(b, msgs(topic, vals), idempotent)
	got := readAll(b, topic, 10, nil, 20*time.Second, nil)
	c.Check(c.SameValues(valuesOf(got), vals), "records differ")
	return ""
}

func transactions(b string) string {
	topic := newTopic(b, "txn", 1, nil)
	cfg := config()
	idempotent(cfg)
	cfg.Producer.Transaction.ID = topic + "-tx"
	cfg.Producer.Transaction.Timeout = 30 * time.Second
	p, err := sarama.NewSyncProducer([]string{b}, cfg)
	c.Must(err, "NewSyncProducer (transactional)")
	defer p.Close()
	txn := func(vals []string, commit bool) {
		c.Must(p.BeginTxn(), "BeginTxn")
		ms := make([]*sarama.ProducerMessage, len(vals))
		for i, v := range vals {
			ms[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}
		}
		c.Must(sendErr(p.SendMessages(ms)), "transactional produce")
		if commit {
			c.Must(p.CommitTxn(), "CommitTxn")
		} else {
			c.Must(p.AbortTxn(), "AbortTxn")
		}
	}
	txn([]string{"c1", "c2", "c3"}, true)
	txn([]string{"a1", "a2"}, false)
	txn([]string{"c4"}, true)
	got := readAll(b, topic, 4, nil, 20*time.Second, func(cfg *sarama.Config) {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	})
	want := [][]byte{[]byte("c1"), []byte("c2"), []byte("c3"), []byte("c4")}
	c.Check(c.SameValues(valuesOf(got), want), "read %q", valuesOf(got))
	return ""
}

// txnProducer is a transactional SyncProducer that sends to the messages' own partitions.
func txnProducer(b, txnID string) sarama.SyncProducer {
	cfg := config()
	idempotent(cfg)
	cfg.Producer.Transaction.ID = txnID
	cfg.Producer.Transaction.Timeout = 30 * time.Second
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{b}, cfg)
	c.Must(err, "NewSyncProducer (transactional)")
	return p
}

// endOffsets lists the LSOs (readCommitted) or the high watermarks of the topic's partitions
// (ListOffsets with the isolation level; sarama's Client.GetOffset always reads uncommitted).
func endOffsets(b, topic string, partitions int32, readCommitted bool) map[int32]int64 {
	cl, err := sarama.NewClient([]string{b}, config())
	c.Must(err, "NewClient")
	defer cl.Close()
	out := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		leader, err := cl.Leader(topic, p)
		c.Must(err, "Leader")
		req := sarama.NewOffsetRequest(config().Version)
		if readCommitted {
			req.IsolationLevel = sarama.ReadCommitted
		}
		req.AddBlock(topic, p, sarama.OffsetNewest, 1)
		resp, err := leader.GetAvailableOffsets(req)
		c.Must(err, "ListOffsets")
		blk := resp.GetBlock(topic, p)
		c.Check(blk != nil && blk.Err == sarama.ErrNoError, "ListOffsets %s[%d]: %v", topic, p, blk)
		out[p] = blk.Offset
	}
	return out
}

// drain reads the topics' partitions from the start until n messages came, then 500 ms more
// in which nothing else may arrive (sarama exposes no consumer position to compare with the end).
func drain(b string, topics map[string]int32, n int, readCommitted bool) []*sarama.ConsumerMessage {
	cfg := config()
	if readCommitted {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	cl, err := sarama.NewClient([]string{b}, cfg)
	c.Must(err, "NewClient")
	defer cl.Close()
	cons, err := sarama.NewConsumerFromClient(cl)
	c.Must(err, "NewConsumer")
	defer cons.Close()
	merged := make(chan *sarama.ConsumerMessage, 1024)
	errs := make(chan error, 64)
	for t, np := range topics {
		for p := int32(0); p < np; p++ {
			pc, err := cons.ConsumePartition(t, p, sarama.OffsetOldest)
			c.Must(err, fmt.Sprintf("ConsumePartition %s[%d]", t, p))
			defer pc.AsyncClose()
			go func() {
				for m := range pc.Messages() {
					merged <- m
				}
			}()
			go func() {
				for e := range pc.Errors() {
					errs <- e
				}
			}()
		}
	}
	var out []*sarama.ConsumerMessage
	deadline := time.After(20 * time.Second)
	var settle <-chan time.Time
	for {
		if len(out) >= n && settle == nil {
			settle = time.After(500 * time.Millisecond)
		}
		select {
		case m := <-merged:
			out = append(out, m)
		case e := <-errs:
			c.Fatalf("consume: %v", e)
		case <-deadline:
			c.Fatalf("consumed %d of %d records", len(out), n)
		case <-settle:
			return out
		}
	}
}

// byPartition gives the values per "topic:partition" in offset order.
func byPartition(ms []*sarama.ConsumerMessage) map[string][]string {
	slices.SortStableFunc(ms, func(x, y *sarama.ConsumerMessage) int {
		if x.Topic != y.Topic {
			return strings.Compare(x.Topic, y.Topic)
		}
		if x.Partition != y.Partition {
			return int(x.Partition - y.Partition)
		}
		return int(x.Offset - y.Offset)
	})
	out := map[string][]string{}
	for _, m := range ms {
		k := fmt.Sprintf("%s:%d", m.Topic, m.Partition)
		out[k] = append(out[k], string(m.Value))
	}
	return out
}

func sendTo(p sarama.SyncProducer, topic string, partition int32, v string) int64 {
	_, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: partition, Value: sarama.StringEncoder(v)})
	c.Must(err, "transactional produce")
	return off
}

func txnAbortMulti(b string) string {
	a := newTopic(b, "txn-abort-multi-a", 3, nil)
	bt := newTopic(b, "txn-abort-multi-b", 2, nil)
	type tp struct {
		t string
		p int32
	}
	var tps []tp
	for p := int32(0); p < 3; p++ {
		tps = append(tps, tp{a, p})
	}
	for p := int32(0); p < 2; p++ {
		tps = append(tps, tp{bt, p})
	}
	p := txnProducer(b, a+"-tx")
	defer p.Close()
	txn := func(prefix string, n int, commit bool) {
		c.Must(p.BeginTxn(), "BeginTxn")
		var ms []*sarama.ProducerMessage
		for _, x := range tps {
			for i := 0; i < n; i++ {
				ms = append(ms, &sarama.ProducerMessage{Topic: x.t, Partition: x.p, Value: sarama.StringEncoder(fmt.Sprintf("%s-%d-%d", prefix, x.p, i))})
			}
		}
		c.Must(sendErr(p.SendMessages(ms)), "transactional produce")
		if commit {
			c.Must(p.CommitTxn(), "CommitTxn")
		} else {
			c.Must(p.AbortTxn(), "AbortTxn")
		}
	}
	txn("a", 3, false)
	txn("c", 2, true)
	got := byPartition(drain(b, map[string]int32{a: 3, bt: 2}, 10, true))
	want := map[string][]string{}
	for _, x := range tps {
		want[fmt.Sprintf("%s:%d", x.t, x.p)] = []string{fmt.Sprintf("c-%d-0", x.p), fmt.Sprintf("c-%d-1", x.p)}
	}
	c.Check(fmt.Sprint(got) == fmt.Sprint(want), "read_committed read %v", got)
	return ""
}

// sendEach produces one record per partition of a 2-partition topic, acknowledged before the
// next step (the log order is known); their offsets.
func sendEach(p sarama.SyncProducer, topic, tag string) map[int32]int64 {
	out := map[int32]int64{}
	for q := int32(0); q < 2; q++ {
		out[q] = sendTo(p, topic, q, fmt.Sprintf("%s-%d", tag, q))
	}
	return out
}

func pyDict(m map[int32]int64) string {
	return fmt.Sprintf("{0: %d, 1: %d}", m[0], m[1])
}

func txnReadCommitted(b string) string {
	topic := newTopic(b, "txn-read-committed", 2, nil)
	p1 := txnProducer(b, topic+"-tx1")
	defer p1.Close()
	p2 := txnProducer(b, topic+"-tx2")
	defer p2.Close()
	c.Must(p1.BeginTxn(), "BeginTxn")
	first1 := sendEach(p1, topic, "p1-t1-0")
	c.Must(p2.BeginTxn(), "BeginTxn")
	first2 := sendEach(p2, topic, "p2-t1-0")
	sendEach(p1, topic, "p1-t1-1")
	last := sendEach(p2, topic, "p2-t1-1")
	hw := map[int32]int64{0: last[0] + 1, 1: last[1] + 1}
	lso := endOffsets(b, topic, 2, true)
	c.Check(pyDict(lso) == pyDict(first1), "LSO %v with both open, want %v", lso, first1)
	got := endOffsets(b, topic, 2, false)
	c.Check(pyDict(got) == pyDict(hw), "high watermark %v, want %v", got, hw)
	c.Must(p1.CommitTxn(), "CommitTxn")
	lsoOpen := endOffsets(b, topic, 2, true)
	c.Check(pyDict(lsoOpen) == pyDict(first2), "LSO %v after the first commit, want %v", lsoOpen, first2)
	got = endOffsets(b, topic, 2, false)
	c.Check(got[0] > hw[0] && got[1] > hw[1], "high watermark did not cover the marker")
	below := byPartition(drain(b, map[string]int32{topic: 2}, 2, true))
	c.Check(fmt.Sprint(below) == fmt.Sprint(map[string][]string{topic + ":0": {"p1-t1-0-0"}, topic + ":1": {"p1-t1-0-1"}}),
		"below the LSO read %v", below)
	c.Must(p2.AbortTxn(), "AbortTxn")
	c.Must(p2.BeginTxn(), "BeginTxn")
	sendEach(p2, topic, "p2-t2-0")
	c.Must(p1.BeginTxn(), "BeginTxn")
	sendEach(p1, topic, "p1-t2-0")
	c.Must(p2.CommitTxn(), "CommitTxn")
	c.Must(p1.AbortTxn(), "AbortTxn")
	all := byPartition(drain(b, map[string]int32{topic: 2}, 6, true))
	want := map[string][]string{}
	for q := 0; q < 2; q++ {
		k := fmt.Sprintf("%s:%d", topic, q)
		for _, t := range []string{"p1-t1-0", "p1-t1-1", "p2-t2-0"} {
			want[k] = append(want[k], fmt.Sprintf("%s-%d", t, q))
		}
	}
	c.Check(fmt.Sprint(all) == fmt.Sprint(want), "read_committed read %v, want %v", all, want)
	lso = endOffsets(b, topic, 2, true)
	hw = endOffsets(b, topic, 2, false)
	c.Check(pyDict(lso) == pyDict(hw), "final LSO %v != high watermark %v", lso, hw)
	return fmt.Sprintf("LSO %s while a transaction was open, %s at the end", pyDict(lsoOpen), pyDict(hw))
}

func txnReadUncommitted(b string) string {
	topic := newTopic(b, "txn-read-uncommitted", 1, nil)
	p := txnProducer(b, topic+"-tx")
	defer p.Close()
	var sent []string
	send := func(v string) int64 {
		off := sendTo(p, topic, 0, v)
		sent = append(sent, fmt.Sprintf("%d=%s", off, v))
		return off
	}
	read := func() []string {
		var out []string
		for _, m := range drain(b, map[string]int32{topic: 1}, len(sent), false) {
			out = append(out, fmt.Sprintf("%d=%s", m.Offset, m.Value))
		}
		return out
	}
	c.Must(p.BeginTxn(), "BeginTxn")
	send("u-c1")
	send("u-c2")
	c.Must(p.CommitTxn(), "CommitTxn")
	c.Must(p.BeginTxn(), "BeginTxn")
	send("u-a1")
	send("u-a2")
	c.Must(p.AbortTxn(), "AbortTxn")
	c.Must(p.BeginTxn(), "BeginTxn")
	last := send("u-o1")
	got := read()
	c.Check(fmt.Sprint(got) == fmt.Sprint(sent), "read %v, sent %v", got, sent)
	hw := endOffsets(b, topic, 1, false)[0]
	c.Check(hw == last+1, "high watermark %d with a transaction open, want %d", hw, last+1)
	c.Must(p.CommitTxn(), "CommitTxn")
	got = read()
	c.Check(fmt.Sprint(got) == fmt.Sprint(sent), "read %v, sent %v", got, sent)
	hw = endOffsets(b, topic, 1, false)[0]
	c.Check(hw == last+2, "high watermark %d after the commit, want %d", hw, last+2)
	return ""
}

// txnSendOffsets: sarama's AddOffsetsToTxn takes a group id (no member/generation checks).
func txnSendOffsets(b string) string {
	src := newTopic(b, "txn-send-offsets-in", 1, nil)
	dst := newTopic(b, "txn-send-offsets-out", 1, nil)
	vals := c.Payloads(10, "in")
	produce(b, msgs(src, vals), nil)
	group := c.GroupName(client, "txn_send_offsets")
	recs := drain(b, map[string]int32{src: 1}, 10, true)
	c.Check(c.SameValues(valuesOf(recs), vals), "consumed %d of 10 input records", len(recs))
	committed := func() int64 {
		a := admin(b)
		defer a.Close()
		resp, err := a.ListConsumerGroupOffsets(group, map[string][]int32{src: {0}})
		c.Must(err, "ListConsumerGroupOffsets")
		blk := resp.GetBlock(src, 0)
		if blk == nil || blk.Err != sarama.ErrNoError {
			return -1
		}
		return blk.Offset
	}
	p := txnProducer(b, dst+"-tx")
	defer p.Close()
	txn := func(lo, hi int, commit bool) int64 {
		c.Must(p.BeginTxn(), "BeginTxn")
		for _, m := range recs[lo:hi] {
			sendTo(p, dst, 0, "out-"+string(m.Value))
		}
		c.Must(p.AddOffsetsToTxn(map[string][]*sarama.PartitionOffsetMetadata{src: {{Partition: 0, Offset: int64(hi)}}}, group),
			"AddOffsetsToTxn")
		before := committed()
		if commit {
			c.Must(p.CommitTxn(), "CommitTxn")
		} else {
			c.Must(p.AbortTxn(), "AbortTxn")
		}
		return before
	}
	before := txn(0, 4, true)
	c.Check(before < 0, "offset %d visible before the first transaction committed", before)
	now := committed()
	c.Check(now == 4, "committed offset %d after the commit, want 4", now)
	before = txn(4, 7, false)
	c.Check(before == 4, "committed offset %d during the second transaction, want 4", before)
	now = committed()
	c.Check(now == 4, "committed offset %d after the abort, want 4", now)
	before = txn(4, 10, true)
	c.Check(before == 4, "committed offset %d during the third transaction, want 4", before)
	now = committed()
	c.Check(now == 10, "committed offset %d after the commit, want 10", now)
	out := drain(b, map[string]int32{dst: 1}, 10, true)
	want := make([][]byte, len(vals))
	for i, v := range vals {
		want[i] = append([]byte("out-"), v...)
	}
	c.Check(c.SameValues(valuesOf(out), want), "output %q", valuesOf(out))
	return ""
}

func topicListed(a sarama.ClusterAdmin, name string) bool {
	ts, err := a.ListTopics()
	c.Must(err, "ListTopics")
	_, ok := ts[name]
	return ok
}

func adminTopics(b string) string {
	a := admin(b)
	defer a.Close()
	name := c.TopicName(client, "admin-topics")
	c.Must(a.CreateTopic(name, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false), "CreateTopic")
	c.Check(topicListed(a, name), "created topic not listed")
	c.Must(a.DeleteTopic(name), "DeleteTopic")
	c.WaitUntil(10*time.Second, "deleted topic to disappear", 200*time.Millisecond, func() bool { return !topicListed(a, name) })
	return ""
}

func adminPartitions(b string) string {
	topic := newTopic(b, "admin-partitions", 1, nil)
	a := admin(b)
	defer a.Close()
	c.Must(a.CreatePartitions(topic, 3, nil, false), "CreatePartitions")
	c.WaitUntil(10*time.Second, "3 partitions in metadata", 200*time.Millisecond, func() bool {
		ts, err := a.DescribeTopics([]string{topic})
		c.Must(err, "DescribeTopics")
		return len(ts) == 1 && len(ts[0].Partitions) == 3
	})
	produce(b, []*sarama.ProducerMessage{{Topic: topic, Partition: 2, Value: sarama.StringEncoder("p2")}},
		func(cfg *sarama.Config) { cfg.Producer.Partitioner = sarama.NewManualPartitioner })
	return ""
}

func configValue(a sarama.ClusterAdmin, res sarama.ConfigResource, key string) string {
	entries, err := a.DescribeConfig(res)
	c.Must(err, "DescribeConfig "+res.Name)
	for _, e := range entries {
		if e.Name == key {
			return e.Value
		}
	}
	c.Fatalf("%s not in the describe configs response", key)
	return ""
}

func adminConfigs(b string) string {
	retention := "3600000"
	topic := newTopic(b, "admin-configs", 1, map[string]*string{"retention.ms": &retention})
	a := admin(b)
	defer a.Close()
	res := sarama.ConfigResource{Type: sarama.TopicResource, Name: topic}
	got := configValue(a, res, "retention.ms")
	c.Check(got == "3600000", "retention.ms = %s", got)
	v := "12345"
	c.Must(a.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}}, false), "IncrementalAlterConfig")
	// Kafka applies an alter through its metadata log: a describe right after may still
	// show the old value for a moment.
	c.WaitUntil(10*time.Second, "retention.ms = 12345 after the alter", 100*time.Millisecond, func() bool {
		got = configValue(a, res, "retention.ms")
		return got == "12345"
	})
	brokers, _, err := a.DescribeCluster()
	c.Must(err, "DescribeCluster")
	c.Check(len(brokers) > 0, "no broker described")
	got = configValue(a, sarama.ConfigResource{Type: sarama.BrokerResource, Name: strconv.Itoa(int(brokers[0].ID()))}, "num.partitions")
	c.Check(got != "", "broker num.partitions has no value")
	return ""
}

func adminGroups(b string) string {
	topic := newTopic(b, "admin-groups", 1, nil)
	produce(b, msgs(topic, [][]byte{[]byte("x")}), nil)
	g := c.GroupName(client, "admin-groups")
	cfg := config()
	cg, err := sarama.NewConsumerGroup([]string{b}, g, cfg)
	c.Must(err, "NewConsumerGroup")
	h := &commitSession{handler: *newHandler(), offset: 1, after: make(chan struct{})}
	// commit after the first record: reuse commitSession with a 1-record threshold
	one := &oneCommit{h}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cg.Consume(ctx, []string{topic}, one) }()
	select {
	case <-h.after:
	case err := <-cg.Errors():
		c.Fatalf("consumer group: %v", err)
	case err := <-done:
		c.Fatalf("Consume returned before a record: %v", err)
	case <-time.After(20 * time.Second):
		c.Fatalf("no record in the group consumer")
	}
	cancel()
	<-done
	c.Must(cg.Close(), "close group")
	a := admin(b)
	defer a.Close()
	listed := func() bool {
		gs, err := a.ListConsumerGroups()
		c.Must(err, "ListConsumerGroups")
		_, ok := gs[g]
		return ok
	}
	c.Check(listed(), "group not listed")
	ds, err := a.DescribeConsumerGroups([]string{g})
	c.Must(err, "DescribeConsumerGroups")
	c.Check(len(ds) == 1 && ds[0].Err == sarama.ErrNoError && ds[0].State == "Empty", "described %+v", ds)
	c.Must(a.DeleteConsumerGroup(g), "DeleteConsumerGroup")
	c.WaitUntil(10*time.Second, "deleted group to disappear", 200*time.Millisecond, func() bool { return !listed() })
	return ""
}

// oneCommit marks and commits after the first record of its claim.
type oneCommit struct{ *commitSession }

func (o *oneCommit) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			sess.MarkMessage(m, "")
			sess.Commit()
			o.once.Do(func() { close(o.after) })
		case <-sess.Context().Done():
			return nil
		}
	}
}

func largeMessages(b string) string {
	topic := newTopic(b, "large", 1, nil)
	big := c.LargeValue(c.LargeSize)
	// Raise the client-side limit so the broker, not the client, judges the size.
	big4 := func(cfg *sarama.Config) {
		cfg.Producer.MaxMessageBytes = 4 << 20
	}
	produce(b, msgs(topic, [][]byte{big}), big4)
	got := readAll(b, topic, 1, nil, 20*time.Second, func(cfg *sarama.Config) {
		cfg.Consumer.Fetch.Default = 4 << 20
		cfg.Consumer.Fetch.Max = 4 << 20
	})
	c.Check(bytes.Equal(got[0].Value, big), "large value differs")
	cfg := config()
	big4(cfg)
	cfg.Producer.Retry.Max = 0
	p, err := sarama.NewSyncProducer([]string{b}, cfg)
	c.Must(err, "NewSyncProducer")
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(c.LargeValue(c.OverSize))})
	c.Check(err != nil, "broker accepted a record over max.message.bytes")
	c.Check(errors.Is(err, sarama.ErrMessageSizeTooLarge), "rejected with %v", err)
	return ""
}

func manyPartitions(b string) string {
	topic := newTopic(b, "many", 64, nil)
	ms := make([]*sarama.ProducerMessage, 64)
	all := make([]int32, 64)
	for i := range ms {
		ms[i] = &sarama.ProducerMessage{Topic: topic, Partition: int32(i), Value: sarama.StringEncoder(fmt.Sprintf("p%d", i))}
		all[i] = int32(i)
	}
	produce(b, ms, func(cfg *sarama.Config) {
		cfg.Producer.Partitioner = sarama.NewManualPartitioner
		cfg.Producer.Flush.Frequency = 20 * time.Millisecond
	})
	got := readAll(b, topic, 64, all, 30*time.Second, nil)
	seen := map[int32]string{}
	for _, m := range got {
		seen[m.Partition] = string(m.Value)
	}
	c.Check(len(got) == 64 && len(seen) == 64, "read %d records from %d partitions", len(got), len(seen))
	for p, v := range seen {
		c.Check(v == fmt.Sprintf("p%d", p), "partition %d holds %q", p, v)
	}
	return ""
}

// ---------------------------------------------------------------- security

// xdgSCRAM is sarama's SCRAMClient on github.com/xdg-go/scram, as sarama's own example
// (examples/sasl_scram_client) wires it: sarama ships no SCRAM implementation.
type xdgSCRAM struct {
	*scram.ClientConversation
	hash scram.HashGeneratorFcn
}

func (x *xdgSCRAM) Begin(user, password, authzID string) error {
	cl, err := x.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	x.ClientConversation = cl.NewConversation()
	return nil
}

// tokenProvider hands sarama a token.
type tokenProvider string

func (t tokenProvider) Token() (*sarama.AccessToken, error) {
	return &sarama.AccessToken{Token: string(t)}, nil
}

// loginConfig sets sarama's TLS and SASL options for a login.
func loginConfig(l c.Login) func(*sarama.Config) {
	return func(cfg *sarama.Config) {
		if t := l.TLSConfig(); t != nil {
			cfg.Net.TLS.Enable, cfg.Net.TLS.Config = true, t
		}
		if !l.SASL() {
			return
		}
		cfg.Net.SASL.Enable, cfg.Net.SASL.Handshake = true, true
		cfg.Net.SASL.User, cfg.Net.SASL.Password = l.User, l.Password
		switch l.Mechanism {
		case "PLAIN":
			cfg.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case "SCRAM-SHA-256":
			cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAM{hash: scram.SHA256} }
		case "SCRAM-SHA-512":
			cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAM{hash: scram.SHA512} }
		case "OAUTHBEARER":
			cfg.Net.SASL.Mechanism = sarama.SASLTypeOAuth
			cfg.Net.SASL.TokenProvider = tokenProvider(l.Token())
		}
	}
}

// secRoundtrip creates a topic over PLAINTEXT, then produces and reads back over the login's listener.
func secRoundtrip(b, scenario string, l c.Login) string {
	topic := newTopic(b, scenario, 2, nil)
	vals := c.Payloads(10, "sec")
	produce(l.Bootstrap, msgs(topic, vals), loginConfig(l))
	got := readAll(l.Bootstrap, topic, 10, nil, 20*time.Second, loginConfig(l))
	out := make([][]byte, len(got))
	for i, m := range got {
		out[i] = m.Value
	}
	slices.SortFunc(out, bytes.Compare)
	c.Check(c.SameValues(out, vals), "records read back differ")
	return "10 records over " + l.Label()
}

// secRefused connects a client as the login: sarama reports the broker's SASL error, or the
// TLS failure (handshake, or the broker's alert right after it under TLS 1.3).
func secRefused(_, _ string, l c.Login) (error, bool) {
	cfg := config()
	loginConfig(l)(cfg)
	cfg.Metadata.Retry.Max = 0
	cl, err := sarama.NewClient([]string{l.Bootstrap}, cfg)
	if err == nil {
		// sarama connects lazily after a successful bootstrap: a request shows the failure.
		_, err = cl.Controller()
		cl.Close()
		if err == nil {
			return nil, false
		}
	}
	if l.SASL() {
		return err, errors.Is(err, sarama.ErrSASLAuthenticationFailed) ||
			strings.Contains(err.Error(), "SASL Authentication failed")
	}
	var alert tls.AlertError
	return err, errors.As(err, &alert) || strings.Contains(err.Error(), "tls:")
}

func main() {
	s := map[string]c.Scenario{
		"metadata":                 metadata,
		"produce_acks0":            acks("produce_acks0", sarama.NoResponse),
		"produce_acks1":            acks("produce_acks1", sarama.WaitForLocal),
		"produce_acksall":          acks("produce_acksall", sarama.WaitForAll),
		"keys_partitioner":         keysPartitioner,
		"headers":                  headers,
		"null_values":              nullValues,
		"consume_assign":           consumeAssign,
		"consume_timestamp":        consumeTimestamp,
		"group_range":              group("group_range", sarama.NewBalanceStrategyRange),
		"group_roundrobin":         group("group_roundrobin", sarama.NewBalanceStrategyRoundRobin),
		"group_sticky":             group("group_sticky", sarama.NewBalanceStrategySticky),
		"group_cooperative_sticky": group("group_cooperative_sticky", sarama.NewBalanceStrategyCooperativeSticky),
		"commit_resume":            commitResume,
		"idempotent_producer":      idempotentProducer,
		"transactions":             transactions,
		"txn_abort_multi":          txnAbortMulti,
		"txn_read_committed":       txnReadCommitted,
		"txn_read_uncommitted":     txnReadUncommitted,
		"txn_send_offsets":         txnSendOffsets,
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
