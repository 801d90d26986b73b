package securetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/kafkaacl"
	"github.com/kgrpc/platform/internal/proctest"
)

// broker is the running secure broker as scripts/kafka.sh describes it.
type broker struct {
	addr    string
	clients string // directory of the principals' property files
}

// properties returns the librdkafka properties of principal on b.
func (b broker) properties(t *testing.T, principal string) kafka.ConfigMap {
	t.Helper()
	cfg, err := app.ReadKafkaConfigFile(b.file(principal))
	if err != nil {
		t.Fatal(err)
	}
	cfg["bootstrap.servers"] = b.addr
	return cfg
}

// file returns the path of principal's property file.
func (b broker) file(principal string) string {
	return filepath.Join(b.clients, principal+".properties")
}

// script runs scripts/kafka.sh in secure mode and returns its stdout.
func script(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(string(bytes.TrimSpace(out)))
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "kafka.sh")}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KAFKA_SECURE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("KAFKA_SECURE=1 scripts/kafka.sh %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func TestSecureChannels(t *testing.T) {
	if os.Getenv("SECURE_SUITE") != "1" {
		t.Skip("the secure-channel suite runs with SECURE_SUITE=1 against KAFKA_SECURE=1 scripts/kafka.sh start (scripts/test.sh runs it in a pass of its own)")
	}
	began := time.Now()
	script(t, "status")
	b := broker{addr: script(t, "brokers"), clients: script(t, "clients")}
	var r [4]byte
	_, _ = rand.Read(r[:])
	prefix := "secure-" + hex.EncodeToString(r[:]) + "."
	script(t, "acls", prefix)
	bin := proctest.Build(t, "./cmd/gateway", "./cmd/usersvc", "./cmd/productsvc", "./cmd/ordersvc")
	t.Logf("broker %s, topic prefix %q, ACLs granted and binaries built in %v", b.addr, prefix, time.Since(began).Round(100*time.Millisecond))

	t.Run("walkthrough", func(t *testing.T) { walkthrough(t, b, bin, prefix) })
	t.Run("a unit reads no other service's request topic", func(t *testing.T) { foreignTopics(t, b, prefix) })
	t.Run("no connection without valid credentials", func(t *testing.T) { refused(t, b) })
}

// walkthrough runs the split binaries as their principals and the README's
// walkthrough through the gateway.
func walkthrough(t *testing.T, b broker, bin, prefix string) {
	began := time.Now()
	dir := t.TempDir()
	c := proctest.NewCluster(t, bin, b.addr, prefix)
	conf := func(unit string) []string { return []string{"--kafka-config-file", b.file(unit)} }
	svcs := []*proctest.Proc{
		c.Start("usersvc", "usersvc", append(conf(kafkaacl.Users), "--db", filepath.Join(dir, "users.db"),
			"--admin-email", proctest.AdminEmail, "--admin-password", proctest.AdminPassword)...),
		c.Start("productsvc", "productsvc", append(conf(kafkaacl.Products), "--db", filepath.Join(dir, "products.db"), "--seed-demo")...),
		c.Start("ordersvc", "ordersvc", append(conf(kafkaacl.Orders), "--db", filepath.Join(dir, "orders.db"))...),
		c.Start("gateway", "gateway", append(conf(kafkaacl.Gateway), "--auth-rate-limit", "0")...),
	}
	for _, p := range svcs {
		proctest.WaitOK(t, p, "/readyz", 90*time.Second)
	}
	gw := svcs[3].URL
	t.Logf("four units ready over SASL_SSL in %v", time.Since(began).Round(100*time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	call := func(what, method, path, token string, body any) map[string]any {
		t.Helper()
		code, out, err := proctest.API(ctx, gw, method, path, token, body)
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s: %s %s = %d %v %v", what, method, path, code, out, err)
		}
		return out
	}
	call("register", "POST", "/v1/users", "", map[string]any{"email": "ada@example.com", "password": "correct-horse", "displayName": "Ada"})
	token, _ := call("login", "POST", "/v1/auth:login", "", map[string]any{"email": "ada@example.com", "password": "correct-horse"})["accessToken"].(string)
	if token == "" {
		t.Fatal("login answered no accessToken")
	}
	products, _ := call("list products", "GET", "/v1/products?inStock=true&orderBy=price&pageSize=1", "", nil)["products"].([]any)
	if len(products) != 1 {
		t.Fatalf("list products: %d products, want 1 (--seed-demo)", len(products))
	}
	product, _ := products[0].(map[string]any)
	id, _ := product["id"].(string)
	stock := proctest.Num(product["stock"])
	order := call("create order", "POST", "/v1/orders", token, map[string]any{"items": []any{map[string]any{"productId": id, "quantity": 2}}})
	orderID, _ := order["id"].(string)
	if got := call("get order", "GET", "/v1/orders/"+orderID, token, nil); got["id"] != orderID {
		t.Fatalf("get order %s = %v", orderID, got)
	}
	if got := proctest.Num(call("get product", "GET", "/v1/products/"+id, "", nil)["stock"]); got != stock-2 {
		t.Fatalf("stock after ordering 2 = %d, want %d", got, stock-2)
	}
	// Cancelling gives the stock back through OrderStatusChanged, which
	// productsvc reads as its own principal.
	call("cancel order", "POST", "/v1/orders/"+orderID+":cancel", token, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := proctest.Num(call("get product", "GET", "/v1/products/"+id, "", nil)["stock"])
		if got == stock {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stock after cancelling = %d 30s later, want %d back", got, stock)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("walkthrough done in %v", time.Since(began).Round(100*time.Millisecond))

	// The ACLs give every unit all it needs: no unit was refused anything.
	denied := regexp.MustCompile(`(?i)authori[sz]ation[ _]failed|not authorized|AUTHORIZATION_FAILED|Authentication failed`)
	for _, p := range svcs {
		for _, line := range strings.Split(p.Log.String(), "\n") {
			if denied.MatchString(line) {
				t.Errorf("%s was refused by the broker: %s", p.Name, line)
			}
		}
	}
}

// foreignTopics shows, with plain clients, that a principal reads only the
// request topic of its own service and writes no other service's one.
func foreignTopics(t *testing.T, b broker, prefix string) {
	users, products, orders := prefix+usersv1.UserServiceKafkaTopic, prefix+productsv1.ProductServiceKafkaTopic, prefix+ordersv1.OrderServiceKafkaTopic
	// The walkthrough's services made them; made here too (as admin), so
	// that this runs alone as well: a principal allowed to describe a
	// missing topic is told it does not exist.
	ensureTopics(t, b, users, products, orders)
	for _, tc := range []struct {
		principal, topic string
		read             bool // whether the principal may read topic
	}{
		{kafkaacl.Products, products, true},
		{kafkaacl.Products, users, false},
		{kafkaacl.Products, orders, false},
		{kafkaacl.Orders, products, false}, // it writes requests there, never reads them
		{kafkaacl.Users, orders, false},
		{kafkaacl.Gateway, users, false},
	} {
		t.Run(tc.principal+" reads "+tc.topic, func(t *testing.T) {
			// A consumer group the principal may use: its service's, or,
			// for the gateway, a reply consumer's.
			group := prefix + kafkaacl.Namespaces[tc.principal] + "probe"
			if tc.principal == kafkaacl.Gateway {
				group = kafkaacl.ReplyGroupPrefix + "probe"
			}
			err := readOne(t, b.properties(t, tc.principal), group, tc.topic)
			switch {
			case tc.read && err != nil:
				t.Fatalf("%s reading its own request topic %s: %v", tc.principal, tc.topic, err)
			case !tc.read && (err == nil || err.(kafka.Error).Code() != kafka.ErrTopicAuthorizationFailed):
				t.Fatalf("%s reading %s: err %v, want %v", tc.principal, tc.topic, err, kafka.ErrTopicAuthorizationFailed)
			case !tc.read:
				t.Logf("refused as it should be: %v", err)
			}
		})
	}
	// Nor can productsvc join usersvc's consumer group (and so take its
	// partitions or commit its offsets).
	t.Run("productsvc joins usersvc's group", func(t *testing.T) {
		cfg := b.properties(t, kafkaacl.Products)
		cfg["group.id"] = users // the request topic's consumer group
		c, err := kafka.NewConsumer(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Subscribe(products, nil); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if e, ok := c.Poll(100).(kafka.Error); ok {
				if e.Code() != kafka.ErrGroupAuthorizationFailed {
					t.Fatalf("productsvc joining group %s: %v, want %v", users, e, kafka.ErrGroupAuthorizationFailed)
				}
				t.Logf("refused as it should be: %v", e)
				return
			}
		}
		t.Fatalf("productsvc joining group %s: no error in 20s", users)
	})
	// Nor can productsvc slip a request into usersvc's topic.
	p, err := kafka.NewProducer(ptr(b.properties(t, kafkaacl.Products)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &users, Partition: kafka.PartitionAny}, Value: []byte("forged")}, done); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		m := e.(*kafka.Message)
		if err, ok := m.TopicPartition.Error.(kafka.Error); !ok || err.Code() != kafka.ErrTopicAuthorizationFailed {
			t.Fatalf("productsvc producing to %s: %v, want %v", users, m.TopicPartition.Error, kafka.ErrTopicAuthorizationFailed)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("productsvc producing to %s: no delivery report in 30s", users)
	}
}

// ensureTopics creates the topics that do not exist yet, as admin.
func ensureTopics(t *testing.T, b broker, topics ...string) {
	t.Helper()
	admin, err := kafka.NewAdminClient(ptr(b.properties(t, "admin")))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var specs []kafka.TopicSpecification
	for _, topic := range topics {
		specs = append(specs, kafka.TopicSpecification{Topic: topic, NumPartitions: 1, ReplicationFactor: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			t.Fatalf("create %s: %v", r.Topic, r.Error)
		}
	}
}

// readOne reads partition 0 of topic from the beginning with a consumer of
// cfg in group. It asks for the topic's metadata and returns the topic's
// error, if any (a principal without DESCRIBE on the topic gets
// TOPIC_AUTHORIZATION_FAILED there); then for the partition's offsets,
// returning that error; then it polls the partition (a principal with
// DESCRIBE but no READ gets TOPIC_AUTHORIZATION_FAILED from the fetch) and
// returns the first error it polls, or nil when none comes in 3s.
func readOne(t *testing.T, cfg kafka.ConfigMap, group, topic string) error {
	t.Helper()
	cfg["group.id"] = group
	cfg["enable.auto.commit"] = false
	c, err := kafka.NewConsumer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	if err := md.Topics[topic].Error; err.Code() != kafka.ErrNoError {
		return err
	}
	if _, _, err := c.QueryWatermarkOffsets(topic, 0, 10000); err != nil {
		return err
	}
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	for quiet := time.Now().Add(3 * time.Second); time.Now().Before(quiet); {
		if e, ok := c.Poll(100).(kafka.Error); ok {
			return e
		}
	}
	return nil
}

// refused shows that a client with no credentials, a wrong password or no
// trust in the broker's CA gets nothing from the broker.
func refused(t *testing.T, b broker) {
	for _, tc := range []struct {
		name string
		edit func(kafka.ConfigMap)
		want kafka.ErrorCode
	}{
		{"no TLS, no SASL", func(m kafka.ConfigMap) {
			m["security.protocol"] = "PLAINTEXT"
			for _, k := range []string{"sasl.mechanisms", "sasl.username", "sasl.password", "ssl.ca.location"} {
				delete(m, k)
			}
		}, kafka.ErrAllBrokersDown},
		{"TLS without SASL", func(m kafka.ConfigMap) {
			m["security.protocol"] = "SSL"
			for _, k := range []string{"sasl.mechanisms", "sasl.username", "sasl.password"} {
				delete(m, k)
			}
		}, kafka.ErrAllBrokersDown},
		{"wrong password", func(m kafka.ConfigMap) { m["sasl.password"] = "wrong-password" }, kafka.ErrAuthentication},
		{"another unit's password", func(m kafka.ConfigMap) {
			m["sasl.password"] = b.properties(t, kafkaacl.Users)["sasl.password"]
		}, kafka.ErrAuthentication},
		{"the broker's CA not trusted", func(m kafka.ConfigMap) { delete(m, "ssl.ca.location") }, kafka.ErrSsl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.properties(t, kafkaacl.Products)
			tc.edit(cfg)
			p, err := kafka.NewProducer(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := p.GetMetadata(nil, true, 5000); err == nil {
				t.Fatal("the broker answered a metadata request")
			}
			var seen []string
			deadline := time.After(20 * time.Second)
			for {
				select {
				case e := <-p.Events():
					if err, ok := e.(kafka.Error); ok {
						if err.Code() == tc.want {
							t.Logf("refused as it should be: %v", err)
							return
						}
						seen = append(seen, err.Error())
					}
				case <-deadline:
					t.Fatalf("no %v error in 20s; errors seen: %q", tc.want, seen)
				}
			}
		})
	}
}

func ptr(m kafka.ConfigMap) *kafka.ConfigMap { return &m }
