package kafkaacl

import (
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
)

// TestNamespaces checks that each service's topics lie in the namespace
// Grants gives it, so a renamed topic fails here rather than at the broker.
func TestNamespaces(t *testing.T) {
	for _, tc := range []struct{ svc, topic string }{
		{Users, usersv1.UserServiceKafkaTopic},
		{Users, usersv1.UserCreatedKafkaTopic},
		{Products, productsv1.ProductServiceKafkaTopic},
		{Products, productsv1.ProductChangedKafkaTopic},
		{Products, productsv1.StockChangedKafkaTopic},
		{Products, "shop.products.v1.ProductService.events"}, // its subscriber group (internal/app)
		{Orders, ordersv1.OrderServiceKafkaTopic},
		{Orders, ordersv1.OrderCreatedKafkaTopic},
		{Orders, ordersv1.OrderStatusChangedKafkaTopic},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			if !strings.HasPrefix(tc.topic, Namespaces[tc.svc]) {
				t.Errorf("%s is outside %s's namespace %q", tc.topic, tc.svc, Namespaces[tc.svc])
			}
		})
	}
}

// TestGrants checks what each principal may and may not do under Grants.
func TestGrants(t *testing.T) {
	const p = "t1."
	grants := Grants(p)
	topic, group := kafka.ResourceTopic, kafka.ResourceGroup
	read, write, create, describe := kafka.ACLOperationRead, kafka.ACLOperationWrite, kafka.ACLOperationCreate, kafka.ACLOperationDescribe
	users, products, orders := p+usersv1.UserServiceKafkaTopic, p+productsv1.ProductServiceKafkaTopic, p+ordersv1.OrderServiceKafkaTopic
	for _, tc := range []struct {
		unit string
		typ  kafka.ResourceType
		name string
		op   kafka.ACLOperation
		want bool
	}{
		// Each service consumes and creates its own request topic, and
		// owns its dead letters and events.
		{Users, topic, users, read, true},
		{Users, group, users, read, true},
		{Users, topic, users + ".dlq", create, true},
		{Users, topic, p + usersv1.UserCreatedKafkaTopic, write, true},
		{Products, topic, products, read, true},
		{Products, group, p + "shop.products.v1.ProductService.events", read, true},
		{Orders, topic, orders, read, true},
		{Orders, topic, p + ordersv1.OrderStatusChangedKafkaTopic, write, true},
		// No one reads another service's request topic, or joins its group.
		{Products, topic, users, read, false},
		{Products, topic, users, describe, false},
		{Products, topic, orders, read, false},
		{Orders, topic, products, read, false},
		{Orders, topic, users, read, false},
		{Users, topic, orders, read, false},
		{Gateway, topic, users, read, false},
		{Gateway, topic, products, read, false},
		{Gateway, topic, orders, read, false},
		{Products, group, users, read, false},
		{Gateway, group, orders, read, false},
		// Requests go only where the unit calls.
		{Gateway, topic, users, write, true},
		{Gateway, topic, products, write, true},
		{Gateway, topic, orders, write, true},
		{Orders, topic, products, write, true},
		{Orders, topic, users, write, false},
		{Products, topic, users, write, false},
		{Products, topic, orders, write, false},
		{Users, topic, products, write, false},
		// Replies: services write them, callers read them; stream frames
		// go both ways, servers read theirs from an inbox partition.
		{Users, topic, p + ReplyTopic, write, true},
		{Users, topic, p + ReplyTopic, read, true},
		{Users, group, InboxGroupPrefix + "usersvc-1", read, true},
		{Users, group, ReplyGroupPrefix + "usersvc-1", read, false},
		{Gateway, topic, p + ReplyTopic, read, true},
		{Gateway, topic, p + ReplyTopic, create, true},
		{Gateway, topic, p + ReplyTopic, write, true},
		{Gateway, topic, p + ReplyTopic, kafka.ACLOperationDelete, false},
		{Orders, topic, p + ReplyTopic, read, true},
		{Gateway, group, ReplyGroupPrefix + "gw-1", read, true},
		// Events: only the owner writes; productsvc reads the orders' status.
		{Products, topic, p + ordersv1.OrderStatusChangedKafkaTopic, read, true},
		{Products, topic, p + ordersv1.OrderStatusChangedKafkaTopic, write, false},
		{Products, topic, p + ordersv1.OrderCreatedKafkaTopic, read, false},
		{Orders, topic, p + productsv1.StockChangedKafkaTopic, write, false},
		{Gateway, topic, p + usersv1.UserCreatedKafkaTopic, write, false},
		// Each service owns its health topic; the gateway writes to them.
		{Products, topic, p + HealthTopic(Products), read, true},
		{Products, topic, p + HealthTopic(Products), create, true},
		{Products, topic, p + HealthTopic(Products) + ".dlq", create, true},
		{Products, group, p + HealthTopic(Products), read, true},
		{Products, topic, p + HealthTopic(Users), read, false},
		{Products, group, p + HealthTopic(Users), read, false},
		{Gateway, topic, p + HealthTopic(Orders), write, true},
		{Gateway, topic, p + HealthTopic(Orders), read, false},
		{Orders, topic, p + HealthTopic(Products), write, false},
		// Another prefix is another deployment.
		{Users, topic, "t2." + usersv1.UserServiceKafkaTopic, read, false},
		{Gateway, topic, "t2." + usersv1.UserServiceKafkaTopic, write, false},
	} {
		verb := " may not "
		if tc.want {
			verb = " may "
		}
		t.Run(tc.unit+verb+tc.op.String()+" "+tc.typ.String()+" "+tc.name, func(t *testing.T) {
			if got := Allowed(grants, "User:"+tc.unit, tc.typ, tc.name, tc.op); got != tc.want {
				t.Errorf("Allowed = %v, want %v; grants:\n%v", got, tc.want, grants)
			}
		})
	}
}

func TestBindings(t *testing.T) {
	grants := Grants("")
	n := 0
	for _, g := range grants {
		n += len(g.Ops)
	}
	bs := Bindings(grants)
	if len(bs) != n {
		t.Fatalf("%d bindings for %d operations", len(bs), n)
	}
	for _, b := range bs {
		if b.PermissionType != kafka.ACLPermissionTypeAllow || b.Host != "*" || !strings.HasPrefix(b.Principal, "User:") {
			t.Errorf("binding %+v: want an allow rule for a User principal from any host", b)
		}
	}
}
