// Command franz runs one compat scenario with franz-go (kgo + kadm):
// `franz SCENARIO BOOTSTRAP` prints one COMPAT-RESULT line.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	c "kbroker.local/compat/goclients/common"
)

const client = "franz-go"

func newClient(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	// A short MetadataMinAge: right after CreateTopics Kafka may not have leaders yet, and
	// kgo would otherwise wait 5 s before it looks again.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.MetadataMinAge(250 * time.Millisecond)}, opts...)...)
	c.Must(err, "kgo.NewClient")
	return cl
}

func admin(bootstrap string) (*kadm.Client, func()) {
	// kgo answers metadata requests from a cache at most MetadataMinAge old; the admin
	// scenarios poll for changes.
	cl := newClient(bootstrap, kgo.MetadataMinAge(100*time.Millisecond))
	return kadm.NewClient(cl), cl.Close
}

func newTopic(bootstrap, scenario string, partitions int32, configs map[string]*string) string {
	name := c.TopicName(client, scenario)
	adm, done := admin(bootstrap)
	defer done()
	ctx, cancel := c.Ctx(20 * time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, name)
	c.Must(err, "CreateTopic")
	c.Must(resp.Err, "CreateTopic "+name)
	return name
}

// produce writes recs with a fresh producer (idempotence off unless opts turn it on, so
// each cell tests its own feature) and returns them with partition/offset filled in.
func produce(bootstrap string, recs []*kgo.Record, opts ...kgo.Opt) []*kgo.Record {
	cl := newClient(bootstrap, append([]kgo.Opt{kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	c.Must(cl.ProduceSync(ctx, recs...).FirstErr(), "produce")
	return recs
}

func values(vals [][]byte, topic string) []*kgo.Record {
	out := make([]*kgo.Record, len(vals))
	for i, v := range vals {
		out[i] = &kgo.Record{Topic: topic, Value: v}
	}
	return out
}

// poll collects n records from cl within timeout, failing on any fetch error.
func poll(cl *kgo.Client, n int, timeout time.Duration) []*kgo.Record {
	var out []*kgo.Record
	deadline := time.Now().Add(timeout)
	for len(out) < n && time.Now().Before(deadline) {
		ctx, cancel := c.Ctx(500 * time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		for _, e := range fs.Errors() {
			if errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, context.Canceled) {
				continue
			}
			c.Fatalf("fetch %s[%d]: %v", e.Topic, e.Partition, e.Err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func partitionsOf(bootstrap, topic string) []int32 {
	adm, done := admin(bootstrap)
	defer done()
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	md, err := adm.Metadata(ctx, topic)
	c.Must(err, "metadata")
	t, ok := md.Topics[topic]
	c.Check(ok && t.Err == nil, "topic %s not in metadata (%v)", topic, t.Err)
	return t.Partitions.Numbers()
}

// readAll reads n records from the start of the topic's partitions (all when nil).
func readAll(bootstrap, topic string, n int, partitions []int32, timeout time.Duration, opts ...kgo.Opt) []*kgo.Record {
	if partitions == nil {
		partitions = partitionsOf(bootstrap, topic)
	}
	at := map[int32]kgo.Offset{}
	for _, p := range partitions {
		at[p] = kgo.NewOffset().AtStart()
	}
	cl := newClient(bootstrap, append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at})}, opts...)...)
	defer cl.Close()
	out := poll(cl, n, timeout)
	c.Check(len(out) >= n, "consumed %d of %d records", len(out), n)
	return out
}

func valuesOf(recs []*kgo.Record) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

// ---------------------------------------------------------------- scenarios

func metadata(b string) string {
	topic := newTopic(b, "metadata", 3, nil)
	adm, done := admin(b)
	defer done()
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	md, err := adm.Metadata(ctx)
	c.Must(err, "metadata")
	host, port, _ := net.SplitHostPort(b)
	p, _ := strconv.Atoi(port)
	ids := map[int32]bool{}
	found := false
	for _, br := range md.Brokers {
		ids[br.NodeID] = true
		found = found || (br.Host == host && int(br.Port) == p)
	}
	c.Check(found, "bootstrap broker not listed: %v", md.Brokers)
	t, ok := md.Topics[topic]
	c.Check(ok && t.Err == nil, "topic missing or in error: %v", t.Err)
	nums := t.Partitions.Numbers()
	slices.Sort(nums)
	c.Check(slices.Equal(nums, []int32{0, 1, 2}), "partitions %v", nums)
	for _, pd := range t.Partitions {
		c.Check(ids[pd.Leader], "partition %d without a known leader (%d)", pd.Partition, pd.Leader)
	}
	return ""
}

func acks(scenario string, a kgo.Acks) func(string) string {
	return func(b string) string {
		topic := newTopic(b, scenario, 1, nil)
		vals := c.Payloads(20, "m")
		produce(b, values(vals, topic), kgo.RequiredAcks(a))
		got := readAll(b, topic, 20, nil, 20*time.Second)
		c.Check(c.SameValues(valuesOf(got), vals), "records differ from what was produced")
		return ""
	}
}

func keysPartitioner(b string) string {
	topic := newTopic(b, "keys", 6, nil)
	vals := c.Payloads(60, "m")
	recs := values(vals, topic)
	for i, r := range recs {
		r.Key = []byte(fmt.Sprintf("key-%d", i%12))
	}
	produce(b, recs) // default: StickyKeyPartitioner with Kafka's murmur2 for keyed records
	where := map[string]map[int32]bool{}
	parts := map[int32]bool{}
	want := map[string]bool{}
	for _, r := range recs {
		if where[string(r.Key)] == nil {
			where[string(r.Key)] = map[int32]bool{}
		}
		where[string(r.Key)][r.Partition] = true
		parts[r.Partition] = true
		want[fmt.Sprintf("%s/%s/%d", r.Key, r.Value, r.Partition)] = true
	}
	c.Check(len(where) == 12, "%d keys", len(where))
	for k, ps := range where {
		c.Check(len(ps) == 1, "key %s went to partitions %v", k, ps)
	}
	c.Check(len(parts) > 1, "all keys in one partition")
	got := readAll(b, topic, 60, nil, 20*time.Second)
	have := map[string]bool{}
	for _, r := range got {
		have[fmt.Sprintf("%s/%s/%d", r.Key, r.Value, r.Partition)] = true
	}
	c.Check(len(have) == len(want), "consumed key/partition differs")
	for k := range want {
		c.Check(have[k], "consumed key/partition differs: %s missing", k)
	}
	return ""
}

var headers = []kgo.RecordHeader{{Key: "h1", Value: []byte("v1")}, {Key: "h2", Value: []byte{}}, {Key: "h1", Value: []byte("dup")}}

func headersScenario(b string) string {
	topic := newTopic(b, "headers", 1, nil)
	produce(b, []*kgo.Record{{Topic: topic, Value: []byte("with-headers"), Headers: headers}})
	got := readAll(b, topic, 1, nil, 20*time.Second)[0].Headers
	c.Check(slices.EqualFunc(got, headers, func(x, y kgo.RecordHeader) bool {
		return x.Key == y.Key && bytes.Equal(x.Value, y.Value)
	}), "headers %v", got)
	return ""
}

func nullValues(b string) string {
	topic := newTopic(b, "null", 1, nil)
	produce(b, []*kgo.Record{{Topic: topic, Key: []byte("k1"), Value: nil}, {Topic: topic, Key: []byte("k2"), Value: []byte{}}})
	got := readAll(b, topic, 2, nil, 20*time.Second)
	c.Check(got[0].Value == nil && string(got[0].Key) == "k1", "tombstone read as %q (nil: %v)", got[0].Value, got[0].Value == nil)
	c.Check(got[1].Value != nil && len(got[1].Value) == 0 && string(got[1].Key) == "k2",
		"empty value read as %q (nil: %v)", got[1].Value, got[1].Value == nil)
	return ""
}

func compression(codec string) func(string) string {
	codecs := map[string]kgo.CompressionCodec{"gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	return func(b string) string {
		topic := newTopic(b, "compression-"+codec, 1, nil)
		vals := c.Payloads(50, "m")
		for i := range vals {
			vals[i] = bytes.Repeat(vals[i], 20)
		}
		produce(b, values(vals, topic), kgo.ProducerBatchCompression(codecs[codec]), kgo.ProducerLinger(50*time.Millisecond))
		got := readAll(b, topic, 50, nil, 20*time.Second)
		c.Check(c.SameValues(valuesOf(got), vals), "records differ")
		return ""
	}
}

func consumeAssign(b string) string {
	topic := newTopic(b, "assign", 3, nil)
	vals := c.Payloads(10, "m")
	recs := values(vals, topic)
	for _, r := range recs {
		r.Partition = 1
	}
	produce(b, recs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	cl := newClient(b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {1: kgo.NewOffset().At(5)}}))
	defer cl.Close()
	got := poll(cl, 5, 20*time.Second)
	c.Check(len(got) == 5, "got %d records", len(got))
	for i, r := range got {
		c.Check(r.Partition == 1 && r.Offset == int64(5+i) && bytes.Equal(r.Value, vals[5+i]),
			"record %d: partition %d offset %d value %q", i, r.Partition, r.Offset, r.Value)
	}
	return ""
}

func consumeTimestamp(b string) string {
	topic := newTopic(b, "timestamp", 1, nil)
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	recs := make([]*kgo.Record, 5)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("t%d", i)), Timestamp: time.UnixMilli(t0 + int64(i)*1000)}
	}
	produce(b, recs)
	adm, done := admin(b)
	defer done()
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	listed, err := adm.ListOffsetsAfterMilli(ctx, t0+1500, topic)
	c.Must(err, "ListOffsetsAfterMilli")
	lo, ok := listed.Lookup(topic, 0)
	c.Check(ok && lo.Err == nil && lo.Offset == 2, "offset for timestamp: %+v", lo)
	cl := newClient(b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(lo.Offset)}}))
	defer cl.Close()
	got := poll(cl, 1, 20*time.Second)
	c.Check(len(got) > 0 && string(got[0].Value) == "t2" && got[0].Timestamp.UnixMilli() == t0+2000,
		"wrong first record %v", got)
	return ""
}

// member is one group consumer whose current assignment is tracked through the rebalance callbacks.
type member struct {
	mu       sync.Mutex
	assigned map[int32]bool
	cl       *kgo.Client
}

func (m *member) set(ps map[string][]int32, add bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, list := range ps {
		for _, p := range list {
			if add {
				m.assigned[p] = true
			} else {
				delete(m.assigned, p)
			}
		}
	}
}

func (m *member) partitions() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int32, 0, len(m.assigned))
	for p := range m.assigned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func group(scenario string, balancer kgo.GroupBalancer) func(string) string {
	return func(b string) string {
		topic := newTopic(b, scenario, 4, nil)
		vals := c.Payloads(40, "m")
		recs := values(vals, topic)
		for i, r := range recs {
			r.Key = []byte(strconv.Itoa(i))
		}
		produce(b, recs)
		g := c.GroupName(client, scenario)
		ms := make([]*member, 2)
		for i := range ms {
			m := &member{assigned: map[int32]bool{}}
			m.cl = newClient(b, kgo.ConsumerGroup(g), kgo.ConsumeTopics(topic), kgo.Balancers(balancer),
				kgo.DisableAutoCommit(), kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { m.set(ps, true) }),
				kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { m.set(ps, false) }),
				kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { m.set(ps, false) }))
			ms[i] = m
		}
		defer func() {
			for _, m := range ms {
				m.cl.Close()
			}
		}()
		seen := map[string]bool{}
		c.WaitUntil(45*time.Second, "a balanced 2-member group that consumed all 40 records", 0, func() bool {
			for _, m := range ms {
				ctx, cancel := c.Ctx(100 * time.Millisecond)
				for _, r := range m.cl.PollFetches(ctx).Records() {
					seen[string(r.Value)] = true
				}
				cancel()
			}
			a0, a1 := ms[0].partitions(), ms[1].partitions()
			all := append(slices.Clone(a0), a1...)
			slices.Sort(all)
			return len(a0) > 0 && len(a1) > 0 && slices.Equal(all, []int32{0, 1, 2, 3}) && len(seen) == 40
		})
		return c.Assignment(ms[0].partitions(), ms[1].partitions())
	}
}

// commitSync commits offsets synchronously and fails on any request or partition error.
func commitSync(cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) {
	ctx, cancel := c.Ctx(15 * time.Second)
	defer cancel()
	var cerr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					cerr = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	c.Must(cerr, "commit")
}

func commitResume(b string) string {
	topic := newTopic(b, "commit", 1, nil)
	vals := c.Payloads(10, "m")
	produce(b, values(vals, topic))
	g := c.GroupName(client, "commit")
	opts := []kgo.Opt{kgo.ConsumerGroup(g), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	cl := newClient(b, opts...)
	got := poll(cl, 4, 30*time.Second)
	c.Check(len(got) >= 4, "first consumer read %d records", len(got))
	commitSync(cl, map[string]map[int32]kgo.EpochOffset{topic: {0: {Epoch: -1, Offset: 4}}})
	adm := kadm.NewClient(cl)
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, g)
	c.Must(err, "FetchOffsets")
	o, ok := offs.Lookup(topic, 0)
	c.Check(ok && o.Err == nil && o.At == 4, "committed offset %+v", o)
	cl.Close()
	cl = newClient(b, opts...)
	defer cl.Close()
	got = poll(cl, 1, 30*time.Second)
	c.Check(len(got) > 0 && got[0].Offset == 4 && bytes.Equal(got[0].Value, vals[4]), "resumed at %v", got)
	return ""
}

func idempotentProducer(b string) string {
	topic := newTopic(b, "idempotent", 1, nil)
	vals := c.Payloads(10, "m")
	cl := newClient(b, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(15*time.Second))
	defer cl.Close()
	ctx, cancel := c.Ctx(20 * time.Second)
	defer cancel()
	c.Must(cl.ProduceSync(ctx, values(vals, topic)...).FirstErr(), "idempotent produce")
	pid, epoch, err := cl.ProducerID(ctx)
	c.Must(err, "ProducerID")
	c.Check(pid >= 0, "no producer id (%d)", pid)
	got := readAll(b, topic, 10, nil, 20*time.Second)
	c.Check(c.SameValues(valuesOf(got), vals), "records differ")
	for _, r := range got {
		c.Check(r.ProducerID == pid && r.ProducerEpoch == epoch, "record offset %d has producer %d/%d, want %d/%d",
			r.Offset, r.ProducerID, r.ProducerEpoch, pid, epoch)
	}
	return fmt.Sprintf("producer id %d epoch %d", pid, epoch)
}

func transactions(b string) string {
	topic := newTopic(b, "txn", 1, nil)
	cl := newClient(b, kgo.TransactionalID(topic+"-tx"), kgo.TransactionTimeout(30*time.Second),
		kgo.RecordDeliveryTimeout(20*time.Second))
	defer cl.Close()
	ctx, cancel := c.Ctx(45 * time.Second)
	defer cancel()
	txn := func(vals []string, end kgo.TransactionEndTry) {
		c.Must(cl.BeginTransaction(), "BeginTransaction")
		recs := make([]*kgo.Record, len(vals))
		for i, v := range vals {
			recs[i] = &kgo.Record{Topic: topic, Value: []byte(v)}
		}
		c.Must(cl.ProduceSync(ctx, recs...).FirstErr(), "transactional produce")
		c.Must(cl.EndTransaction(ctx, end), fmt.Sprintf("EndTransaction(commit=%v)", end))
	}
	txn([]string{"c1", "c2", "c3"}, kgo.TryCommit)
	txn([]string{"a1", "a2"}, kgo.TryAbort)
	txn([]string{"c4"}, kgo.TryCommit)
	got := readAll(b, topic, 4, nil, 20*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	want := [][]byte{[]byte("c1"), []byte("c2"), []byte("c3"), []byte("c4")}
	c.Check(c.SameValues(valuesOf(got), want), "read %q", valuesOf(got))
	return ""
}

// txnClient is a transactional client producing to explicit partitions.
func txnClient(b, txnID string, opts ...kgo.Opt) *kgo.Client {
	return newClient(b, append([]kgo.Opt{kgo.TransactionalID(txnID), kgo.TransactionTimeout(30 * time.Second),
		kgo.RecordDeliveryTimeout(20 * time.Second), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
}

// endOffsets lists the LSOs (readCommitted) or the high watermarks of topic's partitions.
func endOffsets(b, topic string, readCommitted bool) map[int32]int64 {
	adm, done := admin(b)
	defer done()
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	list := adm.ListEndOffsets
	if readCommitted {
		list = adm.ListCommittedOffsets
	}
	lo, err := list(ctx, topic)
	c.Must(err, "ListOffsets")
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) {
		c.Must(o.Err, fmt.Sprintf("ListOffsets %s[%d]", o.Topic, o.Partition))
		out[o.Partition] = o.Offset
	})
	return out
}

// drain reads topics' partitions from the start until n records came, then settles 500 ms in
// which nothing else may arrive (franz-go exposes no consumer position to compare with the end).
func drain(b string, topics map[string]int32, n int, readCommitted bool) []*kgo.Record {
	parts := map[string]map[int32]kgo.Offset{}
	for t, np := range topics {
		parts[t] = map[int32]kgo.Offset{}
		for p := int32(0); p < np; p++ {
			parts[t][p] = kgo.NewOffset().AtStart()
		}
	}
	iso := kgo.ReadUncommitted()
	if readCommitted {
		iso = kgo.ReadCommitted()
	}
	cl := newClient(b, kgo.ConsumePartitions(parts), kgo.FetchIsolationLevel(iso))
	defer cl.Close()
	out := poll(cl, n, 20*time.Second)
	c.Check(len(out) >= n, "consumed %d of %d records", len(out), n)
	return append(out, poll(cl, 1<<30, 500*time.Millisecond)...)
}

// byPartition gives the values per "topic:partition" in the order read.
func byPartition(recs []*kgo.Record) map[string][]string {
	out := map[string][]string{}
	for _, r := range recs {
		k := fmt.Sprintf("%s:%d", r.Topic, r.Partition)
		out[k] = append(out[k], string(r.Value))
	}
	return out
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
	cl := txnClient(b, a+"-tx")
	defer cl.Close()
	ctx, cancel := c.Ctx(45 * time.Second)
	defer cancel()
	txn := func(prefix string, n int, end kgo.TransactionEndTry) {
		c.Must(cl.BeginTransaction(), "BeginTransaction")
		var recs []*kgo.Record
		for _, x := range tps {
			for i := 0; i < n; i++ {
				recs = append(recs, &kgo.Record{Topic: x.t, Partition: x.p, Value: []byte(fmt.Sprintf("%s-%d-%d", prefix, x.p, i))})
			}
		}
		c.Must(cl.ProduceSync(ctx, recs...).FirstErr(), "transactional produce")
		c.Must(cl.EndTransaction(ctx, end), fmt.Sprintf("EndTransaction(%v)", end))
	}
	txn("a", 3, kgo.TryAbort)
	txn("c", 2, kgo.TryCommit)
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
func sendEach(ctx context.Context, cl *kgo.Client, topic, tag string) map[int32]int64 {
	out := map[int32]int64{}
	for p := int32(0); p < 2; p++ {
		r := &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s-%d", tag, p))}
		c.Must(cl.ProduceSync(ctx, r).FirstErr(), "transactional produce")
		out[p] = r.Offset
	}
	return out
}

func pyDict(m map[int32]int64) string {
	return fmt.Sprintf("{0: %d, 1: %d}", m[0], m[1])
}

func txnReadCommitted(b string) string {
	topic := newTopic(b, "txn-read-committed", 2, nil)
	p1 := txnClient(b, topic+"-tx1")
	defer p1.Close()
	p2 := txnClient(b, topic+"-tx2")
	defer p2.Close()
	ctx, cancel := c.Ctx(60 * time.Second)
	defer cancel()
	c.Must(p1.BeginTransaction(), "BeginTransaction")
	first1 := sendEach(ctx, p1, topic, "p1-t1-0")
	c.Must(p2.BeginTransaction(), "BeginTransaction")
	first2 := sendEach(ctx, p2, topic, "p2-t1-0")
	sendEach(ctx, p1, topic, "p1-t1-1")
	last := sendEach(ctx, p2, topic, "p2-t1-1")
	hw := map[int32]int64{0: last[0] + 1, 1: last[1] + 1}
	lso := endOffsets(b, topic, true)
	c.Check(pyDict(lso) == pyDict(first1), "LSO %v with both open, want %v", lso, first1)
	got := endOffsets(b, topic, false)
	c.Check(pyDict(got) == pyDict(hw), "high watermark %v, want %v", got, hw)
	c.Must(p1.EndTransaction(ctx, kgo.TryCommit), "EndTransaction(commit)")
	lsoOpen := endOffsets(b, topic, true)
	c.Check(pyDict(lsoOpen) == pyDict(first2), "LSO %v after the first commit, want %v", lsoOpen, first2)
	got = endOffsets(b, topic, false)
	c.Check(got[0] > hw[0] && got[1] > hw[1], "high watermark did not cover the marker")
	below := byPartition(drain(b, map[string]int32{topic: 2}, 2, true))
	c.Check(fmt.Sprint(below) == fmt.Sprint(map[string][]string{topic + ":0": {"p1-t1-0-0"}, topic + ":1": {"p1-t1-0-1"}}),
		"below the LSO read %v", below)
	c.Must(p2.EndTransaction(ctx, kgo.TryAbort), "EndTransaction(abort)")
	c.Must(p2.BeginTransaction(), "BeginTransaction")
	sendEach(ctx, p2, topic, "p2-t2-0")
	c.Must(p1.BeginTransaction(), "BeginTransaction")
	sendEach(ctx, p1, topic, "p1-t2-0")
	c.Must(p2.EndTransaction(ctx, kgo.TryCommit), "EndTransaction(commit)")
	c.Must(p1.EndTransaction(ctx, kgo.TryAbort), "EndTransaction(abort)")
	all := byPartition(drain(b, map[string]int32{topic: 2}, 6, true))
	want := map[string][]string{}
	for p := 0; p < 2; p++ {
		k := fmt.Sprintf("%s:%d", topic, p)
		for _, t := range []string{"p1-t1-0", "p1-t1-1", "p2-t2-0"} {
			want[k] = append(want[k], fmt.Sprintf("%s-%d", t, p))
		}
	}
	c.Check(fmt.Sprint(all) == fmt.Sprint(want), "read_committed read %v, want %v", all, want)
	lso = endOffsets(b, topic, true)
	hw = endOffsets(b, topic, false)
	c.Check(pyDict(lso) == pyDict(hw), "final LSO %v != high watermark %v", lso, hw)
	return fmt.Sprintf("LSO %s while a transaction was open, %s at the end", pyDict(lsoOpen), pyDict(hw))
}

func txnReadUncommitted(b string) string {
	topic := newTopic(b, "txn-read-uncommitted", 1, nil)
	cl := txnClient(b, topic+"-tx")
	defer cl.Close()
	ctx, cancel := c.Ctx(45 * time.Second)
	defer cancel()
	var sent []string
	send := func(v string) int64 {
		r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}
		c.Must(cl.ProduceSync(ctx, r).FirstErr(), "transactional produce")
		sent = append(sent, fmt.Sprintf("%d=%s", r.Offset, v))
		return r.Offset
	}
	read := func() []string {
		var out []string
		for _, r := range drain(b, map[string]int32{topic: 1}, len(sent), false) {
			out = append(out, fmt.Sprintf("%d=%s", r.Offset, r.Value))
		}
		return out
	}
	c.Must(cl.BeginTransaction(), "BeginTransaction")
	send("u-c1")
	send("u-c2")
	c.Must(cl.EndTransaction(ctx, kgo.TryCommit), "EndTransaction(commit)")
	c.Must(cl.BeginTransaction(), "BeginTransaction")
	send("u-a1")
	send("u-a2")
	c.Must(cl.EndTransaction(ctx, kgo.TryAbort), "EndTransaction(abort)")
	c.Must(cl.BeginTransaction(), "BeginTransaction")
	last := send("u-o1")
	got := read()
	c.Check(fmt.Sprint(got) == fmt.Sprint(sent), "read %v, sent %v", got, sent)
	hw := endOffsets(b, topic, false)[0]
	c.Check(hw == last+1, "high watermark %d with a transaction open, want %d", hw, last+1)
	c.Must(cl.EndTransaction(ctx, kgo.TryCommit), "EndTransaction(commit)")
	got = read()
	c.Check(fmt.Sprint(got) == fmt.Sprint(sent), "read %v, sent %v", got, sent)
	hw = endOffsets(b, topic, false)[0]
	c.Check(hw == last+2, "high watermark %d after the commit, want %d", hw, last+2)
	return ""
}

// txnSendOffsets uses franz-go's GroupTransactSession: the offsets of the records it polled
// are committed in the transaction at End, and an aborted End rewinds to the committed ones.
func txnSendOffsets(b string) string {
	src := newTopic(b, "txn-send-offsets-in", 1, nil)
	dst := newTopic(b, "txn-send-offsets-out", 1, nil)
	vals := c.Payloads(10, "in")
	produce(b, values(vals, src))
	group := c.GroupName(client, "txn_send_offsets")
	committed := func() int64 {
		adm, done := admin(b)
		defer done()
		ctx, cancel := c.Ctx(10 * time.Second)
		defer cancel()
		or, err := adm.FetchOffsetsForTopics(ctx, group, src)
		c.Must(err, "FetchOffsets")
		o, ok := or.Lookup(src, 0)
		if !ok || o.Err != nil || o.At < 0 {
			return -1
		}
		return o.At
	}
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(b), kgo.MetadataMinAge(250*time.Millisecond),
		kgo.TransactionalID(dst+"-tx"), kgo.TransactionTimeout(30*time.Second), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(src), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	c.Must(err, "NewGroupTransactSession")
	defer sess.Close()
	ctx, cancel := c.Ctx(60 * time.Second)
	defer cancel()
	txn := func(want []string, commit bool) int64 {
		c.Must(sess.Begin(), "Begin")
		var got []string
		deadline := time.Now().Add(30 * time.Second)
		for len(got) < len(want) && time.Now().Before(deadline) {
			pctx, pcancel := c.Ctx(500 * time.Millisecond)
			fs := sess.PollRecords(pctx, len(want)-len(got))
			pcancel()
			for _, r := range fs.Records() {
				got = append(got, string(r.Value))
				c.Must(sess.ProduceSync(ctx, &kgo.Record{Topic: dst, Partition: 0, Value: append([]byte("out-"), r.Value...)}).FirstErr(), "produce")
			}
		}
		c.Check(fmt.Sprint(got) == fmt.Sprint(want), "polled %v, want %v", got, want)
		before := committed()
		end := kgo.TryAbort
		if commit {
			end = kgo.TryCommit
		}
		_, err := sess.End(ctx, end)
		c.Must(err, fmt.Sprintf("End(%v)", end))
		return before
	}
	str := func(vs [][]byte) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = string(v)
		}
		return out
	}
	before := txn(str(vals[0:4]), true)
	c.Check(before < 0, "offset %d visible before the first transaction committed", before)
	now := committed()
	c.Check(now == 4, "committed offset %d after the commit, want 4", now)
	before = txn(str(vals[4:7]), false)
	c.Check(before == 4, "committed offset %d during the second transaction, want 4", before)
	now = committed()
	c.Check(now == 4, "committed offset %d after the abort, want 4", now)
	before = txn(str(vals[4:10]), true)
	c.Check(before == 4, "committed offset %d during the third transaction, want 4", before)
	now = committed()
	c.Check(now == 10, "committed offset %d after the commit, want 10", now)
	out := drain(b, map[string]int32{dst: 1}, 10, true)
	want := make([]string, len(vals))
	for i, v := range vals {
		want[i] = "out-" + string(v)
	}
	got := make([]string, len(out))
	for i, r := range out {
		got[i] = string(r.Value)
	}
	c.Check(fmt.Sprint(got) == fmt.Sprint(want), "output %v", got)
	return ""
}

func topicListed(adm *kadm.Client, name string) bool {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx)
	c.Must(err, "ListTopics")
	return td.Has(name)
}

func adminTopics(b string) string {
	adm, done := admin(b)
	defer done()
	name := c.TopicName(client, "admin-topics")
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	cr, err := adm.CreateTopic(ctx, 2, 1, nil, name)
	c.Must(err, "CreateTopic")
	c.Must(cr.Err, "CreateTopic "+name)
	c.Check(topicListed(adm, name), "created topic not listed")
	dr, err := adm.DeleteTopic(ctx, name)
	c.Must(err, "DeleteTopic")
	c.Must(dr.Err, "DeleteTopic "+name)
	c.WaitUntil(10*time.Second, "deleted topic to disappear", 200*time.Millisecond, func() bool { return !topicListed(adm, name) })
	return ""
}

func adminPartitions(b string) string {
	topic := newTopic(b, "admin-partitions", 1, nil)
	adm, done := admin(b)
	defer done()
	ctx, cancel := c.Ctx(20 * time.Second)
	defer cancel()
	resp, err := adm.UpdatePartitions(ctx, 3, topic)
	c.Must(err, "UpdatePartitions")
	r, err := resp.On(topic, nil)
	c.Must(err, "UpdatePartitions result")
	c.Must(r.Err, "UpdatePartitions "+topic)
	c.WaitUntil(10*time.Second, "3 partitions in metadata", 200*time.Millisecond, func() bool {
		return len(partitionsOf(b, topic)) == 3
	})
	produce(b, []*kgo.Record{{Topic: topic, Partition: 2, Value: []byte("p2")}}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	return ""
}

func configValue(rcs kadm.ResourceConfigs, err error, key string) string {
	c.Must(err, "describe configs")
	c.Check(len(rcs) == 1, "%d resources described", len(rcs))
	c.Must(rcs[0].Err, "describe configs "+rcs[0].Name)
	for _, cfg := range rcs[0].Configs {
		if cfg.Key == key {
			return cfg.MaybeValue()
		}
	}
	c.Fatalf("%s not in the describe configs response", key)
	return ""
}

func adminConfigs(b string) string {
	retention := "3600000"
	topic := newTopic(b, "admin-configs", 1, map[string]*string{"retention.ms": &retention})
	adm, done := admin(b)
	defer done()
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	got := configValue(rcs, err, "retention.ms")
	c.Check(got == "3600000", "retention.ms = %s", got)
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("12345")}}, topic)
	c.Must(err, "AlterTopicConfigs")
	for _, r := range ar {
		c.Must(r.Err, "AlterTopicConfigs "+r.Name)
	}
	// Kafka applies an alter through its metadata log: a describe right after may still
	// show the old value for a moment.
	c.WaitUntil(10*time.Second, "retention.ms = 12345 after the alter", 100*time.Millisecond, func() bool {
		rcs, err = adm.DescribeTopicConfigs(ctx, topic)
		got = configValue(rcs, err, "retention.ms")
		return got == "12345"
	})
	md, err := adm.BrokerMetadata(ctx)
	c.Must(err, "BrokerMetadata")
	c.Check(len(md.Brokers) > 0, "no broker in metadata")
	rcs, err = adm.DescribeBrokerConfigs(ctx, md.Brokers[0].NodeID)
	got = configValue(rcs, err, "num.partitions")
	c.Check(got != "", "broker num.partitions has no value")
	return ""
}

func groupListed(adm *kadm.Client, g string) bool {
	ctx, cancel := c.Ctx(10 * time.Second)
	defer cancel()
	lg, err := adm.ListGroups(ctx)
	c.Must(err, "ListGroups")
	_, ok := lg[g]
	return ok
}

func adminGroups(b string) string {
	topic := newTopic(b, "admin-groups", 1, nil)
	produce(b, values([][]byte{[]byte("x")}, topic))
	g := c.GroupName(client, "admin-groups")
	cl := newClient(b, kgo.ConsumerGroup(g), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	c.Check(len(poll(cl, 1, 20*time.Second)) == 1, "no record in the group consumer")
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	c.Must(cl.CommitUncommittedOffsets(ctx), "commit")
	cl.Close()
	adm, done := admin(b)
	defer done()
	c.Check(groupListed(adm, g), "group not listed")
	dg, err := adm.DescribeGroups(ctx, g)
	c.Must(err, "DescribeGroups")
	d, ok := dg[g]
	c.Check(ok && d.Err == nil && d.State == "Empty", "described group %+v", d)
	dr, err := adm.DeleteGroup(ctx, g)
	c.Must(err, "DeleteGroup")
	c.Must(dr.Err, "DeleteGroup "+g)
	c.WaitUntil(10*time.Second, "deleted group to disappear", 200*time.Millisecond, func() bool { return !groupListed(adm, g) })
	return ""
}

func largeMessages(b string) string {
	topic := newTopic(b, "large", 1, nil)
	big := c.LargeValue(c.LargeSize)
	// Raise the client-side batch limit so the broker, not the client, judges the size.
	opts := []kgo.Opt{kgo.ProducerBatchMaxBytes(4 << 20), kgo.ProducerLinger(0)}
	produce(b, []*kgo.Record{{Topic: topic, Value: big}}, opts...)
	got := readAll(b, topic, 1, nil, 20*time.Second, kgo.FetchMaxBytes(4<<20), kgo.FetchMaxPartitionBytes(4<<20))
	c.Check(bytes.Equal(got[0].Value, big), "large value differs")
	cl := newClient(b, append(opts, kgo.DisableIdempotentWrite(), kgo.RecordRetries(0),
		kgo.RecordDeliveryTimeout(20*time.Second))...)
	defer cl.Close()
	ctx, cancel := c.Ctx(30 * time.Second)
	defer cancel()
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: c.LargeValue(c.OverSize)}).FirstErr()
	c.Check(err != nil, "broker accepted a record over max.message.bytes")
	c.Check(errors.Is(err, kerr.MessageTooLarge), "rejected with %v", err)
	return ""
}

func manyPartitions(b string) string {
	topic := newTopic(b, "many", 64, nil)
	recs := make([]*kgo.Record, 64)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(i), Value: []byte(fmt.Sprintf("p%d", i))}
	}
	produce(b, recs, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(20*time.Millisecond))
	all := make([]int32, 64)
	for i := range all {
		all[i] = int32(i)
	}
	got := readAll(b, topic, 64, all, 30*time.Second)
	seen := map[int32]string{}
	for _, r := range got {
		seen[r.Partition] = string(r.Value)
	}
	c.Check(len(got) == 64 && len(seen) == 64, "read %d records from %d partitions", len(got), len(seen))
	for p, v := range seen {
		c.Check(v == fmt.Sprintf("p%d", p), "partition %d holds %q", p, v)
	}
	return ""
}

// ---------------------------------------------------------------- security

// loginOpts are kgo's options for a login: TLS with the test CA (and client certificate), SASL
// with franz-go's own PLAIN and SCRAM mechanisms.
func loginOpts(l c.Login) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(l.Bootstrap)}
	if cfg := l.TLSConfig(); cfg != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch l.Mechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: l.User, Pass: l.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: l.User, Pass: l.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: l.User, Pass: l.Password}.AsSha512Mechanism()))
	case "OAUTHBEARER":
		opts = append(opts, kgo.SASL(oauth.Auth{Token: l.Token()}.AsMechanism()))
	}
	return opts
}

// secRoundtrip creates a topic over PLAINTEXT, then produces and reads back over the login's listener.
func secRoundtrip(b, scenario string, l c.Login) string {
	topic := newTopic(b, scenario, 2, nil)
	vals := c.Payloads(10, "sec")
	produce(l.Bootstrap, values(vals, topic), loginOpts(l)...)
	got := valuesOf(readAll(l.Bootstrap, topic, 10, []int32{0, 1}, 20*time.Second, loginOpts(l)...))
	slices.SortFunc(got, bytes.Compare)
	c.Check(c.SameValues(got, vals), "records read back differ")
	return "10 records over " + l.Label()
}

// secRefused pings the broker as the login: kgo returns the broker's SASL error, or the TLS
// failure (handshake, or the broker's alert right after it under TLS 1.3).
func secRefused(_, _ string, l c.Login) (error, bool) {
	cl := newClient(l.Bootstrap, loginOpts(l)...)
	defer cl.Close()
	ctx, cancel := c.Ctx(15 * time.Second)
	defer cancel()
	err := cl.Ping(ctx)
	if err == nil {
		return nil, false
	}
	if l.SASL() {
		return err, errors.Is(err, kerr.SaslAuthenticationFailed)
	}
	var alert tls.AlertError
	return err, errors.As(err, &alert) || strings.Contains(err.Error(), "tls:")
}

func main() {
	s := map[string]c.Scenario{
		"metadata":                 metadata,
		"produce_acks0":            acks("produce_acks0", kgo.NoAck()),
		"produce_acks1":            acks("produce_acks1", kgo.LeaderAck()),
		"produce_acksall":          acks("produce_acksall", kgo.AllISRAcks()),
		"keys_partitioner":         keysPartitioner,
		"headers":                  headersScenario,
		"null_values":              nullValues,
		"consume_assign":           consumeAssign,
		"consume_timestamp":        consumeTimestamp,
		"group_range":              group("group_range", kgo.RangeBalancer()),
		"group_roundrobin":         group("group_roundrobin", kgo.RoundRobinBalancer()),
		"group_sticky":             group("group_sticky", kgo.StickyBalancer()),
		"group_cooperative_sticky": group("group_cooperative_sticky", kgo.CooperativeStickyBalancer()),
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
