package faulttest

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
)

// oversized is the size of the oversized poison records: under the
// broker's default 1 MiB record limit, so the broker takes it, but too big
// to be copied whole into a dead-letter topic with headers added.
const oversized = 1_020_000

// poisonRecord is one injected record and where the broker stored it.
type poisonRecord struct {
	kind      string
	topic     string
	partition int32
	offset    int64
}

func (p poisonRecord) String() string {
	return fmt.Sprintf("%s %s[%d]@%d", p.kind, p.topic, p.partition, p.offset)
}

// poisonSpec is one record to inject.
type poisonSpec struct {
	kind      string
	topic     string
	partition int32
	value     []byte
	headers   []kafka.Header
}

// poisonSpecs returns the records to inject: on each request topic an
// undecodable record without the rpc header, one with a garbage rpc
// header, a well-formed request value without the rpc header and an
// oversized one; on every partition of the event topic a garbage value of
// the right type, a StockChanged value labelled as another message, raw
// garbage without headers and an oversized record.
func poisonSpecs(requestTopics []string, eventTopic string, partitions int32) []poisonSpec {
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99}
	big := bytes.Repeat([]byte{0xff}, oversized)
	stock, _ := proto.Marshal(&productsv1.StockChanged{ProductId: "poison", Delta: 1000, Stock: 1000})
	evType := func(name string) []kafka.Header { return []kafka.Header{{Key: "ev-type", Value: []byte(name)}} }
	var specs []poisonSpec
	for i, topic := range requestTopics {
		p := int32(i) % partitions
		rpc := []kafka.Header{{Key: "rpc", Value: garbage}}
		specs = append(specs,
			poisonSpec{"request without rpc header", topic, p, garbage, nil},
			poisonSpec{"request with garbage rpc header", topic, (p + 1) % partitions, garbage, rpc},
			poisonSpec{"request value without rpc header", topic, (p + 2) % partitions, stock, nil},
			poisonSpec{"oversized request", topic, (p + 3) % partitions, big, rpc},
		)
	}
	const own = "shop.orders.v1.OrderStatusChanged"
	for p := range partitions {
		specs = append(specs,
			poisonSpec{"undecodable event", eventTopic, p, garbage, evType(own)},
			poisonSpec{"event of the wrong type", eventTopic, p, stock, evType("shop.products.v1.StockChanged")},
			poisonSpec{"event without headers", eventTopic, p, garbage, nil},
			poisonSpec{"oversized event", eventTopic, p, big, evType(own)},
		)
	}
	return specs
}

// injectPoison produces specs and returns where each was stored.
func injectPoison(brokers string, specs []poisonSpec) ([]poisonRecord, error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "acks": "all", "message.max.bytes": 2_000_000,
		"go.logs.channel.enable": false, "log_level": 3,
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	reports := make(chan kafka.Event, len(specs))
	for i, s := range specs {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &s.topic, Partition: s.partition},
			Key:            []byte("poison-" + strconv.Itoa(i)),
			Value:          s.value,
			Headers:        s.headers,
			Opaque:         i,
		}, reports)
		if err != nil {
			return nil, fmt.Errorf("produce %s: %w", s.kind, err)
		}
	}
	out := make([]poisonRecord, len(specs))
	timeout := time.After(30 * time.Second)
	for range specs {
		select {
		case e := <-reports:
			m, ok := e.(*kafka.Message)
			if !ok {
				return nil, fmt.Errorf("delivery report: %v", e)
			}
			if m.TopicPartition.Error != nil {
				return nil, fmt.Errorf("poison to %s: %w", *m.TopicPartition.Topic, m.TopicPartition.Error)
			}
			s := specs[m.Opaque.(int)]
			out[m.Opaque.(int)] = poisonRecord{s.kind, s.topic, m.TopicPartition.Partition, int64(m.TopicPartition.Offset)}
		case <-timeout:
			return nil, fmt.Errorf("no delivery report for the poison within 30s")
		}
	}
	return out, nil
}

// deadLettered reads the dead-letter topics dlqs from their beginning for
// at most wait and returns the poison records found there (by the
// dlq-topic, dlq-partition and dlq-offset headers), and how many of them
// were stubs (dlq-stub=true). A dead-letter topic that does not exist
// holds none.
func deadLettered(brokers string, dlqs []string, poison []poisonRecord, wait time.Duration) (found map[poisonRecord]bool, stubs int, err error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": "faulttest-dlq-reader", "enable.auto.commit": false,
		"go.logs.channel.enable": false, "log_level": 3,
	})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	var parts []kafka.TopicPartition
	for _, topic := range dlqs {
		md, err := c.GetMetadata(&topic, false, 10_000)
		if err != nil {
			return nil, 0, fmt.Errorf("metadata of %s: %w", topic, err)
		}
		for _, p := range md.Topics[topic].Partitions {
			parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	want := map[string]poisonRecord{}
	for _, p := range poison {
		want[fmt.Sprintf("%s/%d/%d", p.topic, p.partition, p.offset)] = p
	}
	found = map[poisonRecord]bool{}
	if len(parts) == 0 {
		return found, 0, nil
	}
	if err := c.Assign(parts); err != nil {
		return nil, 0, err
	}
	for deadline := time.Now().Add(wait); len(found) < len(poison) && time.Now().Before(deadline); {
		m, err := c.ReadMessage(500 * time.Millisecond)
		if err != nil {
			continue
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		p, ok := want[h["dlq-topic"]+"/"+h["dlq-partition"]+"/"+h["dlq-offset"]]
		if !ok || found[p] {
			continue
		}
		found[p] = true
		if h["dlq-stub"] == "true" {
			stubs++
		}
	}
	return found, stubs, nil
}
