package kafkatransport

import (
	"strings"

	"google.golang.org/protobuf/proto"
)

// SupportPackageIsVersion1 is referenced by code that protoc-gen-go-kafka
// generates. A build fails with an undefined-name error when the generated code
// needs a newer runtime than the one it is compiled against: regenerate, or
// upgrade this module.
const SupportPackageIsVersion1 = true

// KeyFunc returns the Kafka record key of a request message. A nil KeyFunc or
// a nil key lets the producer spread records over all partitions.
type KeyFunc func(req any) []byte

// Key adapts a typed key function, as protoc-gen-go-kafka generates them, to a
// KeyFunc. A request of another type gets no key.
func Key[T any](f func(T) []byte) KeyFunc {
	return func(req any) []byte {
		r, ok := req.(T)
		if !ok {
			return nil
		}
		return f(r)
	}
}

// ServiceSpec is what protoc-gen-go-kafka knows about a service beyond the
// gRPC service descriptor: its request topic and the key of each method.
type ServiceSpec struct {
	// Name is the service's full protobuf name, "pkg.v1.Service".
	Name string
	// Topic is the request topic, before any TopicPrefix. Empty means Name.
	Topic string
	// Keys maps a full method name, "/pkg.v1.Service/Method", to the key
	// function of its requests. Methods without an entry are unkeyed.
	Keys map[string]KeyFunc
}

// topic returns the spec's request topic without prefix.
func (s ServiceSpec) topic() string {
	if s.Topic != "" {
		return s.Topic
	}
	return s.Name
}

// EventSpec is what protoc-gen-go-kafka knows about an event message: its
// topic, its key and how to make an empty one.
type EventSpec[T proto.Message] struct {
	// Name is the event message's full protobuf name.
	Name string
	// Topic is the event topic, before any TopicPrefix. Empty means Name.
	Topic string
	// Key returns the record key, normally the aggregate id.
	Key func(T) []byte
	// New returns an empty message to decode into.
	New func() T
}

// topic returns the spec's event topic without prefix.
func (s EventSpec[T]) topic() string {
	if s.Topic != "" {
		return s.Topic
	}
	return s.Name
}

// serviceOf returns "pkg.Service" of "/pkg.Service/Method".
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
