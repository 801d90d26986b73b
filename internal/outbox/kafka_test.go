package outbox_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"testing"
	"testing/fstest"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// shopEvent is one event of the shop with the topic and key its generated
// spec gives it.
type shopEvent struct {
	ev    proto.Message
	topic string
	key   []byte
}

func shopEvents() []shopEvent {
	uc := &usersv1.UserCreated{UserId: "u_1", Email: "ann@example.com"}
	pc := &productsv1.ProductChanged{ProductId: "p_1", Deleted: true}
	sc := &productsv1.StockChanged{ProductId: "p_2", Delta: -3, Stock: 7, ReservationId: "o_9"}
	oc := &ordersv1.OrderCreated{Order: &ordersv1.Order{Id: "o_1", UserId: "u_1"}}
	os := &ordersv1.OrderStatusChanged{OrderId: "o_2", NewStatus: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED}
	return []shopEvent{
		{uc, usersv1.UserCreatedKafkaTopic, usersv1.UserCreatedKafkaEvent.Key(uc)},
		{pc, productsv1.ProductChangedKafkaTopic, productsv1.ProductChangedKafkaEvent.Key(pc)},
		{sc, productsv1.StockChangedKafkaTopic, productsv1.StockChangedKafkaEvent.Key(sc)},
		{oc, ordersv1.OrderCreatedKafkaTopic, ordersv1.OrderCreatedKafkaEvent.Key(oc)},
		{os, ordersv1.OrderStatusChangedKafkaTopic, ordersv1.OrderStatusChangedKafkaEvent.Key(os)},
	}
}

// The relay publishes every shop event from the outbox on the topic and
// with the key of its generated spec, with no list of event types anywhere.
func TestPublishToPublishesShopEventsByDescriptor(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.TopicPrefix(t)
	pub, err := kafkatransport.NewPublisher(brokers, kafkatransport.WithTopicPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.WithoutCancel(ctx))

	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "o.db"), fstest.MapFS{"001.sql": {Data: []byte(outbox.Schema + ";\n")}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	events := shopEvents()
	err = db.InTx(ctx, func(tx *sqlstore.Tx) error {
		for _, e := range events {
			if err := tx.AddEvents(ctx, e.ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	relay := outbox.NewRelay(db.DB, outbox.PublishTo(pub, "test"), nil)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	for left := -1; left != 0; {
		if ctx.Err() != nil {
			t.Fatalf("outbox still holds %d events", left)
		}
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	cons, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": prefix + "reader", "auto.offset.reset": "earliest"})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	want := map[string]shopEvent{}
	var topics []string
	for _, e := range events {
		want[prefix+e.topic] = e
		topics = append(topics, prefix+e.topic)
	}
	if err := cons.SubscribeTopics(topics, nil); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for len(want) > 0 && ctx.Err() == nil {
		m, err := cons.ReadMessage(time.Second)
		if err != nil {
			continue // a timeout, or the group still forming
		}
		topic := *m.TopicPartition.Topic
		e, ok := want[topic]
		if !ok {
			t.Fatalf("unexpected record on %s", topic)
		}
		delete(want, topic)
		// The ev-id names the outbox row, so a republish after a crash
		// carries the same one.
		var evID string
		for _, h := range m.Headers {
			if h.Key == "ev-id" {
				evID = string(h.Value)
			}
		}
		if !regexp.MustCompile(`^test-outbox-[0-9]+$`).MatchString(evID) || ids[evID] {
			t.Errorf("%s: ev-id %q, want a new test-outbox-<row id>", topic, evID)
		}
		ids[evID] = true
		if string(m.Key) != string(e.key) || len(e.key) == 0 {
			t.Errorf("%s: key %q, want %q", topic, m.Key, e.key)
		}
		got := proto.Clone(e.ev)
		proto.Reset(got)
		if err := proto.Unmarshal(m.Value, got); err != nil || !proto.Equal(got, e.ev) {
			t.Errorf("%s: value %v (%v), want %v", topic, got, err, e.ev)
		}
	}
	for topic := range want {
		t.Errorf("nothing published on %s", topic)
	}

	// A message that is no event is refused, as the relay expects.
	err = outbox.PublishTo(pub, "test")(ctx, wrapperspb.String("not an event"))
	if !errors.Is(err, outbox.ErrUnknownEvent) {
		t.Fatalf("publishing a StringValue: %v, want ErrUnknownEvent", err)
	}
}
