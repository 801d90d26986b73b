package kgrpccli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Headers the transport writes (kafkatransport/doc.go).
const (
	hdrEventType = "ev-type"
	hdrEventID   = "ev-id"
	hdrDLQ       = "dlq-"
)

// partitions returns the partitions of topic with their low and high
// watermarks.
func partitions(c *kafka.Consumer, topic string, timeoutMs int) ([]kafka.TopicPartition, []int64, []int64, error) {
	md, err := c.GetMetadata(&topic, false, timeoutMs)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
		return nil, nil, nil, fmt.Errorf("no topic %s", topic)
	}
	var tps []kafka.TopicPartition
	var lows, highs []int64
	for _, p := range tm.Partitions {
		lo, hi, err := c.QueryWatermarkOffsets(topic, p.ID, timeoutMs)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("offsets of %s[%d]: %w", topic, p.ID, err)
		}
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID})
		lows, highs = append(lows, lo), append(highs, hi)
	}
	return tps, lows, highs, nil
}

// newReader returns a consumer that reads by assignment and commits
// nothing. A record deleted by retention under it restarts it at the
// earliest one left.
func newReader(o options) (*kafka.Consumer, error) {
	return kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": o.brokers, "group.id": "kgrpc-cli", "enable.auto.commit": false,
		"enable.partition.eof": false, "auto.offset.reset": "earliest", "log_level": 0,
	})
}

// headerValue returns the last value of header key in hs.
func headerValue(hs []kafka.Header, key string) (string, bool) {
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return string(hs[i].Value), true
		}
	}
	return "", false
}

// tail prints the events of a topic as JSON lines as they arrive (from its
// start with --from-beginning), decoded by the type their ev-type header
// names, whose descriptor the units' reflection services give.
func tail(ctx context.Context, o options, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fromStart := fs.Bool("from-beginning", false, "read the topic from its start, not only new events")
	n := fs.Int("n", 0, "stop after this many events (0: run until interrupted)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("usage: kgrpc tail TOPIC [--from-beginning] [-n N]")
	}
	topic := o.prefix + args[0]
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || *n < 0 {
		return usagef("usage: kgrpc tail TOPIC [--from-beginning] [-n N]")
	}
	dctx, cancel := withTimeout(ctx, o)
	c, err := discover(dctx, o)
	cancel()
	if err != nil {
		return err
	}
	defer c.close()
	r, err := newReader(o)
	if err != nil {
		return err
	}
	defer r.Close()
	tps, lows, highs, err := partitions(r, topic, int(o.timeout.Milliseconds()))
	if err != nil {
		return err
	}
	for i := range tps {
		tps[i].Offset = kafka.Offset(highs[i])
		if *fromStart {
			tps[i].Offset = kafka.Offset(lows[i])
		}
	}
	if err := r.Assign(tps); err != nil {
		return err
	}
	types := map[string]protoreflect.MessageDescriptor{}
	for seen := 0; *n == 0 || seen < *n; {
		if ctx.Err() != nil {
			return nil
		}
		ev := r.Poll(200)
		m, ok := ev.(*kafka.Message)
		if !ok {
			if e, ok := ev.(kafka.Error); ok && e.IsFatal() {
				return e
			}
			continue
		}
		line := map[string]any{"topic": *m.TopicPartition.Topic, "partition": m.TopicPartition.Partition,
			"offset": int64(m.TopicPartition.Offset), "key": string(m.Key), "timestamp": m.Timestamp.UTC().Format(time.RFC3339Nano)}
		typ, _ := headerValue(m.Headers, hdrEventType)
		line["type"] = typ
		if id, ok := headerValue(m.Headers, hdrEventID); ok {
			line["id"] = id
		}
		if typ == "" {
			line["error"] = "no ev-type header: not an event"
		} else if md, err := eventType(ctx, c, types, typ, o); err != nil {
			line["error"] = err.Error()
		} else {
			msg := dynamicpb.NewMessage(md)
			if err := protoUnmarshal(m.Value, msg); err != nil {
				line["error"] = fmt.Sprintf("undecodable %s: %v", typ, err)
			} else if b, err := protojson.Marshal(msg); err == nil {
				line["event"] = json.RawMessage(b)
			}
		}
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
			return err
		}
		seen++
	}
	return nil
}

// eventType resolves an event's message type once.
func eventType(ctx context.Context, c *cluster, cache map[string]protoreflect.MessageDescriptor, name string, o options) (protoreflect.MessageDescriptor, error) {
	if md, ok := cache[name]; ok {
		return md, nil
	}
	ctx, cancel := withTimeout(ctx, o)
	defer cancel()
	d, err := c.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a message", name)
	}
	cache[name] = md
	return md, nil
}

// deadLetter is one record of a dead-letter topic.
type deadLetter struct {
	msg    *kafka.Message
	source string // dlq-topic
	stub   bool
}

// readDeadLetters returns the records of topic (a dead-letter topic) from
// its start up to its end as it is now, of every partition or of partition
// when it is >= 0, or only the one at offset of partition when offset >= 0.
// It gives up when no record has come for --timeout.
func readDeadLetters(ctx context.Context, o options, topic string, partition int32, offset int64) ([]deadLetter, error) {
	r, err := newReader(o)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tps, lows, highs, err := partitions(r, topic, int(o.timeout.Milliseconds()))
	if err != nil {
		return nil, err
	}
	if offset >= 0 && partition < 0 {
		if len(tps) > 1 {
			return nil, usagef("%s has %d partitions and offsets are per partition: give --partition (dlq list shows each dead letter's)", topic, len(tps))
		}
		partition = tps[0].Partition
	}
	if partition >= 0 && !slices.ContainsFunc(tps, func(tp kafka.TopicPartition) bool { return tp.Partition == partition }) {
		return nil, fmt.Errorf("%s has no partition %d (it has %d)", topic, partition, len(tps))
	}
	left := map[int32]int64{}
	for i := range tps {
		if partition >= 0 && tps[i].Partition != partition {
			continue
		}
		from := lows[i]
		if offset >= 0 {
			if offset < lows[i] || offset >= highs[i] {
				continue
			}
			from = offset
		}
		if from < highs[i] {
			tps[i].Offset = kafka.Offset(from)
			left[tps[i].Partition] = highs[i]
		}
	}
	if offset >= 0 && len(left) == 0 {
		return nil, fmt.Errorf("%s has no record at offset %d of partition %d", topic, offset, partition)
	}
	var assign []kafka.TopicPartition
	for _, tp := range tps {
		if _, ok := left[tp.Partition]; ok {
			assign = append(assign, tp)
		}
	}
	if err := r.Assign(assign); err != nil {
		return nil, err
	}
	var (
		out     []deadLetter
		lastErr error
		idle    = time.Now().Add(o.timeout) // moved on by every record
	)
	for len(left) > 0 {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if time.Now().After(idle) {
			err := fmt.Errorf("reading %s: no record for %v with %d partitions unread", topic, o.timeout, len(left))
			if lastErr != nil {
				err = fmt.Errorf("%w (last error: %v)", err, lastErr)
			}
			return out, err
		}
		var m *kafka.Message
		switch e := r.Poll(200).(type) {
		case *kafka.Message:
			m = e
		case kafka.Error:
			if e.IsFatal() {
				return out, e
			}
			lastErr = e
			continue
		default:
			continue
		}
		idle = time.Now().Add(o.timeout)
		p, off := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		end, ok := left[p]
		if !ok || off >= end {
			continue
		}
		if offset >= 0 && off != offset {
			// The record at offset is gone (retention), or was never there.
			return nil, fmt.Errorf("%s has no record at offset %d of partition %d (the next is at %d)", topic, offset, p, off)
		}
		if offset < 0 || off == offset {
			src, _ := headerValue(m.Headers, "dlq-topic")
			stub, _ := headerValue(m.Headers, "dlq-stub")
			out = append(out, deadLetter{msg: m, source: src, stub: stub == "true"})
		}
		if off+1 >= end || offset >= 0 {
			delete(left, p)
		}
	}
	return out, nil
}

// dlq lists or replays the dead letters of a topic.
func dlq(ctx context.Context, o options, args []string, out io.Writer) error {
	const use = "usage: kgrpc dlq list TOPIC [--partition P] | kgrpc dlq replay TOPIC [--partition P [--offset N]]"
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		return usagef(use)
	}
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	offset := fs.Int64("offset", -1, "replay only the dead letter at this offset (of --partition)")
	partition := fs.Int("partition", -1, "only this partition of the dead-letter topic")
	if err := fs.Parse(args[2:]); err != nil || fs.NArg() != 0 {
		return usagef(use)
	}
	topic := o.prefix + strings.TrimSuffix(args[1], ".dlq") + ".dlq"
	switch args[0] {
	case "list":
		if *offset >= 0 {
			return usagef(use)
		}
		dls, err := readDeadLetters(ctx, o, topic, int32(*partition), -1)
		for _, d := range dls {
			b, err := json.Marshal(letterLine(d))
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s\n", b)
		}
		return err // what was read is printed either way
	case "replay":
		dls, err := readDeadLetters(ctx, o, topic, int32(*partition), *offset)
		if err != nil {
			return err
		}
		return replay(ctx, o, dls, out)
	}
	return usagef(use)
}

// replay produces each dead letter to its source topic again, as it was:
// key, value and headers, without the dlq- headers. Every consumer group
// of the source topic sees it again, not only the one that dead-lettered
// it. Stubs (records too large to copy whole) cannot be replayed. An
// interrupt stops it producing more; a record not acknowledged in time is
// reported as unknown: it may still land.
func replay(ctx context.Context, o options, dls []deadLetter, out io.Writer) error {
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": o.brokers, "enable.idempotence": true, "log_level": 0})
	if err != nil {
		return err
	}
	defer p.Close()
	var errs []error
	done := make(chan kafka.Event, len(dls))
	sent := map[int64]deadLetter{} // by the dead letter's offset, within one partition or one record
	for _, d := range dls {
		off := int64(d.msg.TopicPartition.Offset)
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("interrupted: %d not replayed", len(dls)-len(sent)-len(errs)))
			break
		}
		if d.stub || d.source == "" {
			errs = append(errs, fmt.Errorf("offset %d: a stub without its record (or no dlq-topic header): nothing to replay", off))
			continue
		}
		var hs []kafka.Header
		for _, h := range d.msg.Headers {
			if !strings.HasPrefix(h.Key, hdrDLQ) {
				hs = append(hs, h)
			}
		}
		src := d.source
		m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &src, Partition: kafka.PartitionAny},
			Key: d.msg.Key, Value: d.msg.Value, Headers: hs, Opaque: d}
		if err := p.Produce(m, done); err != nil {
			errs = append(errs, fmt.Errorf("partition %d offset %d: %w", d.msg.TopicPartition.Partition, off, err))
			continue
		}
		sent[int64(d.msg.TopicPartition.Partition)<<48|off] = d
	}
	// Wait for the acknowledgements, for --timeout at most; an interrupt
	// purges what has not gone yet, whose reports then say so.
	for wait := time.Now().Add(o.timeout); p.Len() > 0 && time.Now().Before(wait); {
		if ctx.Err() != nil {
			_ = p.Purge(kafka.PurgeQueue)
			errs = append(errs, errors.New("interrupted: records not yet sent were not replayed"))
			break
		}
		p.Flush(100)
	}
	replayed := 0
	for len(sent) > 0 {
		select {
		case ev := <-done:
			m, ok := ev.(*kafka.Message)
			if !ok {
				continue
			}
			d := m.Opaque.(deadLetter)
			delete(sent, int64(d.msg.TopicPartition.Partition)<<48|int64(d.msg.TopicPartition.Offset))
			if err := m.TopicPartition.Error; err != nil {
				errs = append(errs, fmt.Errorf("partition %d offset %d: %w", d.msg.TopicPartition.Partition, d.msg.TopicPartition.Offset, err))
				continue
			}
			replayed++
			fmt.Fprintf(out, "replayed partition %d offset %d to %s\n", d.msg.TopicPartition.Partition, d.msg.TopicPartition.Offset, d.source)
		case <-time.After(time.Second): // Flush has returned: reports are queued by now
			for _, d := range sent {
				errs = append(errs, fmt.Errorf("partition %d offset %d: not acknowledged in %v: it may still land", d.msg.TopicPartition.Partition, d.msg.TopicPartition.Offset, o.timeout))
			}
			sent = nil
		}
	}
	if len(dls) == 0 {
		fmt.Fprintln(out, "no dead letters")
	}
	if len(errs) > 0 {
		return fmt.Errorf("replayed %d of %d: %w", replayed, len(dls), errors.Join(errs...))
	}
	return nil
}

// protoUnmarshal decodes b into msg.
func protoUnmarshal(b []byte, msg *dynamicpb.Message) error { return proto.Unmarshal(b, msg) }

// letterLine is the JSON line of a dead letter in dlq list: where it is,
// where it came from and why.
func letterLine(d deadLetter) map[string]any {
	h := func(k string) string { v, _ := headerValue(d.msg.Headers, k); return v }
	num := func(k string) any {
		if n, err := strconv.ParseInt(h(k), 10, 64); err == nil {
			return n
		}
		return nil
	}
	line := map[string]any{
		"partition": d.msg.TopicPartition.Partition, "offset": int64(d.msg.TopicPartition.Offset), "key": string(d.msg.Key),
		"source": map[string]any{"topic": d.source, "partition": num("dlq-partition"), "offset": num("dlq-offset")},
		"error":  h("dlq-error"), "attempts": num("dlq-attempts"), "group": h("dlq-group"), "stub": d.stub, "size": len(d.msg.Value),
	}
	if d.stub {
		line["size"] = num("dlq-size")
	}
	if t := h(hdrEventType); t != "" {
		line["type"] = t
	}
	return line
}
