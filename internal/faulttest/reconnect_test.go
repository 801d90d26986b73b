package faulttest

import (
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/kgrpc/platform/internal/proctest"
	"github.com/kgrpc/platform/kafkatransport"
)

// TestMeasureReconnect measures how long librdkafka clients with the
// transport's default settings take to work again after the broker was
// stopped for 20s: a producer, a consumer group member and a consumer of an
// assigned partition (as a client's reply consumer). It runs with
// FAULT_MEASURE=1 on the suite's own Apache Kafka broker and prints one
// line; FAULT_MEASURE_CONF=key=value,... overrides settings of all three,
// to compare (reconnect.backoff.max.ms=10000 is librdkafka's default).
// kafkatransport/config.go quotes its figures.
func TestMeasureReconnect(t *testing.T) {
	if os.Getenv("FAULT_MEASURE") != "1" {
		t.Skip("measures broker reconnects with FAULT_MEASURE=1")
	}
	if os.Getenv("FAULT_BROKER") == "devkafka" {
		t.Skip("measures Apache Kafka's reconnects, not devkafka's")
	}
	extra := kafka.ConfigMap{}
	for _, kv := range strings.Split(os.Getenv("FAULT_MEASURE_CONF"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			extra[k] = v
		}
	}
	b := startBroker(t, proctest.NewCluster(t, "", "", ""))
	topic := "measure"
	pc := kafkatransport.DefaultProducerConfig()
	maps.Copy(pc, extra)
	pc["bootstrap.servers"] = b.addr
	p, err := kafka.NewProducer(&pc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		for range p.Events() {
		}
	}()
	// A group member and a consumer of an assigned partition.
	consumer := func(group string) *kafka.Consumer {
		cc := kafkatransport.DefaultConsumerConfig()
		maps.Copy(cc, extra)
		cc["bootstrap.servers"] = b.addr
		cc["group.id"] = group
		cc["go.logs.channel.enable"] = false
		c, err := kafka.NewConsumer(&cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c, a := consumer("measure"), consumer("measure-assign")
	produce := func() error {
		ch := make(chan kafka.Event, 1)
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Value: []byte("x")}, ch); err != nil {
			return err
		}
		select {
		case e := <-ch:
			return e.(*kafka.Message).TopicPartition.Error
		case <-time.After(300 * time.Millisecond):
			return kafka.NewError(kafka.ErrTimedOut, "slow", false)
		}
	}
	for produce() != nil {
		time.Sleep(100 * time.Millisecond)
	}
	_ = c.Subscribe(topic, nil)
	_ = a.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetEnd}})
	for {
		if _, err := c.ReadMessage(100 * time.Millisecond); err == nil {
			break
		}
		_ = produce()
	}
	for {
		if _, err := a.ReadMessage(200 * time.Millisecond); err != nil {
			break
		}
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	var prod, grp, asg time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		for time.Since(up) < 60*time.Second {
			if produce() == nil {
				prod = time.Since(up)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	wg.Wait()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for time.Since(up) < 60*time.Second && !stopped(done) {
			_ = produce()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Go(func() {
		for time.Since(up) < 60*time.Second {
			if m, err := c.ReadMessage(50 * time.Millisecond); err == nil && m != nil {
				grp = time.Since(up)
				return
			}
		}
	})
	wg.Go(func() {
		for time.Since(up) < 60*time.Second {
			if m, err := a.ReadMessage(50 * time.Millisecond); err == nil && m != nil {
				asg = time.Since(up)
				return
			}
		}
	})
	wg.Wait()
	t.Logf("reconnect after 20s down with %v on top of the defaults: producer %v, group member %v, assigned-partition consumer %v", extra,
		prod.Round(time.Millisecond), grp.Round(time.Millisecond), asg.Round(time.Millisecond))
}
