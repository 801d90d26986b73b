package idemtest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// counting is a ProductService whose AdjustStock adds delta to a counter
// in its database and counts its runs; GetProduct counts its runs.
type counting struct {
	productsv1.UnimplementedProductServiceServer
	db          *sqlstore.DB
	adjust, get atomic.Int64
}

func (c *counting) AdjustStock(ctx context.Context, req *productsv1.AdjustStockRequest) (*productsv1.AdjustStockResponse, error) {
	c.adjust.Add(1)
	if req.GetDelta() < 0 {
		return nil, status.Error(codes.FailedPrecondition, "no negative deltas here")
	}
	var n int64
	err := c.db.InTx(ctx, func(tx *sqlstore.Tx) error {
		return tx.QueryRowContext(ctx, "UPDATE counter SET n = n + $1 RETURNING n", req.GetDelta()).Scan(&n)
	})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &productsv1.AdjustStockResponse{Product: &productsv1.Product{Id: req.GetId(), Stock: n}}, nil
}

func (c *counting) GetProduct(ctx context.Context, req *productsv1.GetProductRequest) (*productsv1.GetProductResponse, error) {
	c.get.Add(1)
	return &productsv1.GetProductResponse{Product: &productsv1.Product{Id: req.GetId()}}, nil
}

// serve runs svc with the idempotency interceptor on a fresh SQLite store
// and returns a client of it and the request topic.
func serve(t *testing.T) (*counting, productsv1.ProductServiceClient, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	brokers, prefix := kafkatest.Brokers(t), kafkatest.TopicPrefix(t)
	db, err := sqlstore.Open(ctx, sqltest.SQLite(t), fstest.MapFS{"001.sql": {Data: []byte(
		"CREATE TABLE counter (n BIGINT NOT NULL);\nINSERT INTO counter (n) VALUES (0);\n")}})
	if err != nil {
		t.Fatal(err)
	}
	svc := &counting{db: db}
	srv, err := kafkatransport.NewServer(brokers, kafkatransport.WithTopicPrefix(prefix),
		kafkatransport.WithUnaryServerInterceptors(idempotency.UnaryServerInterceptor(sqlstore.NewIdempotency(db, nil))))
	if err != nil {
		t.Fatal(err)
	}
	productsv1.RegisterProductServiceKafkaServer(srv, svc)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn, err := kafkatransport.Dial(ctx, brokers, kafkatransport.WithTopicPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		db.Close()
	})
	select {
	case <-srv.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready after 30s")
	}
	return svc, productsv1.NewProductServiceKafkaClient(conn), brokers, prefix + "shop.products.v1.ProductService"
}

func TestLevels(t *testing.T) {
	tests := map[string]descriptorpb.MethodOptions_IdempotencyLevel{
		"/shop.products.v1.ProductService/GetProduct":   descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
		"/shop.products.v1.ProductService/ReserveStock": descriptorpb.MethodOptions_IDEMPOTENT,
		"/shop.products.v1.ProductService/AdjustStock":  descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
		"/shop.products.v1.ProductService/Nope":         descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
		"garbage":                                       descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
		// The health protocol's methods read, although health.proto does
		// not say so.
		grpc_health_v1.Health_Check_FullMethodName: descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
		grpc_health_v1.Health_List_FullMethodName:  descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
	}
	for m, want := range tests {
		if got := idempotency.LevelOf(m); got != want {
			t.Errorf("LevelOf(%s) = %v, want %v", m, got, want)
		}
	}
}

// TestRedeliveredRequestRunsOnce produces a request record a second time,
// as Kafka redelivers it after a crash: the handler does not run again, and
// the second reply is the first answer, marked replayed.
func TestRedeliveredRequestRunsOnce(t *testing.T) {
	svc, client, brokers, topic := serve(t)
	ctx := t.Context()
	resp, err := client.AdjustStock(ctx, &productsv1.AdjustStockRequest{Id: "p1", Delta: 3})
	if err != nil || resp.GetProduct().GetStock() != 3 {
		t.Fatalf("AdjustStock = %v, %v", resp, err)
	}

	// Read the request record back and produce it again, headers and all.
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": topic + ".dup", "auto.offset.reset": "earliest"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	req := next(t, c, func(m *kafka.Message) bool { return m.TopicPartition.Topic != nil && *m.TopicPartition.Topic == topic })
	env := &kafkav1.RequestEnvelope{}
	for _, h := range req.Headers {
		if h.Key == "rpc" {
			if err := proto.Unmarshal(h.Value, env); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: req.TopicPartition.Partition},
		Key: req.Key, Value: req.Value, Headers: req.Headers}, nil); err != nil {
		t.Fatal(err)
	}
	p.Flush(10_000)

	// Two replies to the call's id: the first answer twice.
	rc, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": topic + ".replies"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Assign([]kafka.TopicPartition{{Topic: &env.ReplyTopic, Partition: env.ReplyPartition, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	var replies []*kafkav1.ReplyEnvelope
	var values [][]byte
	for len(replies) < 2 {
		m := next(t, rc, func(*kafka.Message) bool { return true })
		for _, h := range m.Headers {
			r := &kafkav1.ReplyEnvelope{}
			if h.Key == "rpc" && proto.Unmarshal(h.Value, r) == nil && r.GetId() == env.GetId() {
				replies = append(replies, r)
				values = append(values, m.Value)
			}
		}
	}
	if n := svc.adjust.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	replayed := func(r *kafkav1.ReplyEnvelope) bool {
		for _, e := range r.GetHeader() {
			if e.GetKey() == idempotency.ReplayedHeader {
				return true
			}
		}
		return false
	}
	if replies[1].GetCode() != 0 || string(values[1]) != string(values[0]) || replayed(replies[0]) || !replayed(replies[1]) {
		t.Errorf("replies %v / %v with values %x / %x: want the first answer twice, the second marked replayed", replies[0], replies[1], values[0], values[1])
	}
}

// TestKeys checks what the idempotency-key metadata does over the wire.
func TestKeys(t *testing.T) {
	svc, client, _, _ := serve(t)
	ctx := t.Context()
	withKey := func(k string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, k)
	}

	var header metadata.MD
	for i := range 3 {
		resp, err := client.AdjustStock(withKey("k1"), &productsv1.AdjustStockRequest{Id: "p1", Delta: 2}, grpcHeader(&header))
		if err != nil || resp.GetProduct().GetStock() != 2 {
			t.Fatalf("call %d: %v, %v", i, resp, err)
		}
		if got := header.Get(idempotency.ReplayedHeader); (i > 0) != (len(got) == 1 && got[0] == "true") {
			t.Errorf("call %d: replayed header %q", i, got)
		}
	}
	if n := svc.adjust.Load(); n != 1 {
		t.Errorf("three calls with one key ran the handler %d times", n)
	}
	_, err := client.AdjustStock(withKey("k1"), &productsv1.AdjustStockRequest{Id: "p1", Delta: 4})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("same key, other request: %v, want FailedPrecondition", err)
	}
	// A recorded error is answered again without running.
	for range 2 {
		if _, err := client.AdjustStock(withKey("neg"), &productsv1.AdjustStockRequest{Id: "p1", Delta: -1}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("negative delta: %v", err)
		}
	}
	if n := svc.adjust.Load(); n != 2 {
		t.Errorf("handler runs = %d, want 2", n)
	}
	// Reads run every time.
	for range 2 {
		if _, err := client.GetProduct(withKey("g"), &productsv1.GetProductRequest{Id: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := svc.get.Load(); n != 2 {
		t.Errorf("GetProduct ran %d times, want 2 (NO_SIDE_EFFECTS)", n)
	}
	if _, err := client.AdjustStock(withKey(fmt.Sprintf("%0201d", 0)), &productsv1.AdjustStockRequest{Id: "p1", Delta: 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("201-byte key: %v, want InvalidArgument", err)
	}
}

// next returns the next message of c that want accepts, or fails after 30s.
func next(t *testing.T, c *kafka.Consumer, want func(*kafka.Message) bool) *kafka.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m, ok := c.Poll(100).(*kafka.Message); ok && want(m) {
			return m
		}
	}
	t.Fatal("no record after 30s")
	return nil
}

// grpcHeader collects the response header of a call.
func grpcHeader(md *metadata.MD) grpc.CallOption { return grpc.Header(md) }
