package kafkaacl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/kafkatransport"
)

// Unit principals: the SASL user names of the shop's units.
const (
	Gateway  = "gateway"
	Users    = "usersvc"
	Products = "productsvc"
	Orders   = "ordersvc"
)

// ReplyTopic is kafkatransport's default reply topic, before the prefix.
const ReplyTopic = "kgrpc.replies"

// ReplyGroupPrefix begins the consumer group names of kafkatransport's reply
// consumers ("kgrpc-reply-<instance>"), which carry no topic prefix.
const ReplyGroupPrefix = "kgrpc-reply-"

// InboxGroupPrefix begins the consumer group names of kafkatransport's
// stream inbox consumers ("kgrpc-inbox-<instance>"), which read a
// partition of the reply topic by assignment and carry no topic prefix.
const InboxGroupPrefix = "kgrpc-inbox-"

// ClusterName is the name of Kafka's one cluster resource.
const ClusterName = "kafka-cluster"

// Namespaces are the topic and group name prefixes each service owns (before
// the topic prefix): its protobuf package.
var Namespaces = map[string]string{
	Users:    "shop.users.v1.",
	Products: "shop.products.v1.",
	Orders:   "shop.orders.v1.",
}

// HealthTopic returns the request topic of unit's health service, before
// the topic prefix (kafkatransport.HealthSpec).
func HealthTopic(unit string) string { return kafkatransport.HealthSpec(unit).Topic }

// ReflectionTopic returns the request topic of unit's reflection service,
// before the topic prefix (kafkatransport.ReflectionSpec).
func ReflectionTopic(unit string) string { return kafkatransport.ReflectionSpec(unit).Topic }

// Grant allows Principal ("User:<unit>") the operations Ops on the
// resources of type Type whose names match Name by Pattern.
type Grant struct {
	Principal string
	Type      kafka.ResourceType
	Pattern   kafka.ResourcePatternType
	Name      string
	Ops       []kafka.ACLOperation
}

// String renders g as "User:x TOPIC PREFIXED name: READ,WRITE", naming
// the cluster resource CLUSTER as Kafka does (librdkafka calls it BROKER).
func (g Grant) String() string {
	ops := make([]string, len(g.Ops))
	for i, op := range g.Ops {
		ops[i] = op.String()
	}
	typ := g.Type.String()
	if g.Type == kafka.ResourceBroker {
		typ = "CLUSTER"
	}
	return fmt.Sprintf("%s %s %s %q: %s", g.Principal, typ, g.Pattern, g.Name, strings.Join(ops, ","))
}

var (
	own     = []kafka.ACLOperation{kafka.ACLOperationRead, kafka.ACLOperationWrite, kafka.ACLOperationCreate, kafka.ACLOperationDescribe}
	consume = []kafka.ACLOperation{kafka.ACLOperationRead, kafka.ACLOperationDescribe}
	produce = []kafka.ACLOperation{kafka.ACLOperationWrite, kafka.ACLOperationDescribe}
	// subscribe: kafkatransport creates the topics a subscriber or a client
	// reads when they are missing.
	subscribe = []kafka.ACLOperation{kafka.ACLOperationRead, kafka.ACLOperationDescribe, kafka.ACLOperationCreate}
)

// Grants returns every unit's ACLs for topic prefix prefix (see the package
// documentation).
func Grants(prefix string) []Grant {
	var gs []Grant
	add := func(unit string, typ kafka.ResourceType, pat kafka.ResourcePatternType, name string, ops []kafka.ACLOperation) {
		gs = append(gs, Grant{Principal: "User:" + unit, Type: typ, Pattern: pat, Name: name, Ops: ops})
	}
	lit, pre := kafka.ResourcePatternTypeLiteral, kafka.ResourcePatternTypePrefixed
	topic, group := kafka.ResourceTopic, kafka.ResourceGroup
	for _, svc := range []string{Users, Products, Orders} {
		add(svc, topic, pre, prefix+Namespaces[svc], own)
		add(svc, group, pre, prefix+Namespaces[svc], consume)
		// Replies, and the stream inbox: every service serves streams
		// (the health service's Watch at least), whose clients' frames it
		// reads from a partition of the reply topic.
		add(svc, topic, lit, prefix+ReplyTopic, own)
		add(svc, group, pre, InboxGroupPrefix, consume)
		add(svc, kafka.ResourceBroker, lit, ClusterName, []kafka.ACLOperation{kafka.ACLOperationIdempotentWrite})
		// Its health and reflection services' request topics, dead
		// letters and groups.
		for _, t := range []string{prefix + HealthTopic(svc), prefix + ReflectionTopic(svc)} {
			add(svc, topic, lit, t, own)
			add(svc, topic, lit, t+".dlq", own)
			add(svc, group, lit, t, consume)
		}
	}
	callers := map[string][]string{
		Gateway: {usersv1.UserServiceKafkaTopic, productsv1.ProductServiceKafkaTopic, ordersv1.OrderServiceKafkaTopic,
			HealthTopic(Users), HealthTopic(Products), HealthTopic(Orders),
			ReflectionTopic(Users), ReflectionTopic(Products), ReflectionTopic(Orders)},
		Orders: {productsv1.ProductServiceKafkaTopic},
	}
	for _, unit := range []string{Gateway, Orders} {
		// Reading replies; writing stream frames to servers' inboxes.
		add(unit, topic, lit, prefix+ReplyTopic, own)
		add(unit, group, pre, ReplyGroupPrefix, consume)
		for _, t := range callers[unit] {
			add(unit, topic, lit, prefix+t, produce)
		}
	}
	add(Products, topic, lit, prefix+ordersv1.OrderStatusChangedKafkaTopic, subscribe)
	// Every unit watches the revoked tokens (kafkatransport.Watch: no
	// consumer group); usersvc, which publishes them, owns their package.
	for _, unit := range []string{Gateway, Products, Orders} {
		add(unit, topic, lit, prefix+usersv1.UserTokensRevokedKafkaTopic, subscribe)
	}
	return gs
}

// Allowed reports whether grants allow principal op on the resource of type
// typ named name, matching as the StandardAuthorizer does for allow rules
// (a LITERAL name equals, a PREFIXED one begins the resource's name) and
// with its implications (READ, WRITE, CREATE or DELETE imply DESCRIBE).
func Allowed(grants []Grant, principal string, typ kafka.ResourceType, name string, op kafka.ACLOperation) bool {
	for _, g := range grants {
		if g.Principal != principal || g.Type != typ {
			continue
		}
		if !(g.Pattern == kafka.ResourcePatternTypeLiteral && g.Name == name ||
			g.Pattern == kafka.ResourcePatternTypePrefixed && strings.HasPrefix(name, g.Name)) {
			continue
		}
		if slices.Contains(g.Ops, op) || op == kafka.ACLOperationDescribe && slices.ContainsFunc(g.Ops, func(o kafka.ACLOperation) bool {
			return o == kafka.ACLOperationRead || o == kafka.ACLOperationWrite || o == kafka.ACLOperationCreate || o == kafka.ACLOperationDelete
		}) {
			return true
		}
	}
	return false
}

// Bindings returns grants as the broker's ACL bindings, one per operation,
// from any host.
func Bindings(grants []Grant) kafka.ACLBindings {
	var bs kafka.ACLBindings
	for _, g := range grants {
		for _, op := range g.Ops {
			bs = append(bs, kafka.ACLBinding{Type: g.Type, Name: g.Name, ResourcePatternType: g.Pattern,
				Principal: g.Principal, Host: "*", Operation: op, PermissionType: kafka.ACLPermissionTypeAllow})
		}
	}
	return bs
}

// Apply creates the ACL bindings of grants through admin, whose principal
// must be allowed to (the super user). Bindings that exist already are left
// as they are, so Apply can run again.
func Apply(ctx context.Context, admin *kafka.AdminClient, grants []Grant) error {
	bs := Bindings(grants)
	res, err := admin.CreateACLs(ctx, bs)
	if err != nil {
		return fmt.Errorf("kafkaacl: create ACLs: %w", err)
	}
	var errs []error
	for i, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			errs = append(errs, fmt.Errorf("kafkaacl: %s %s %q for %s: %w", bs[i].Operation, bs[i].Type, bs[i].Name, bs[i].Principal, r.Error))
		}
	}
	return errors.Join(errs...)
}
