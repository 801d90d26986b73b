package idempotency

import (
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/kgrpc/platform/kafkatransport"
)

// method is what the interceptor knows of a method.
type method struct {
	// sideEffects is whether the method is neither NO_SIDE_EFFECTS nor
	// IDEMPOTENT and its response type is known.
	sideEffects bool
	output      protoreflect.MessageType
}

// methods caches method facts by full method name.
type methods struct{ m sync.Map }

func (ms *methods) get(fullMethod string) method {
	if v, ok := ms.m.Load(fullMethod); ok {
		return v.(method)
	}
	var m method
	if md := kafkatransport.MethodDescriptorOf(fullMethod); md != nil && LevelOf(fullMethod) == descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN {
		if out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName()); err == nil {
			m = method{sideEffects: true, output: out}
		}
	}
	ms.m.Store(fullMethod, m)
	return m
}

// LevelOf returns the idempotency level of the method named fullMethod
// ("/pkg.Service/Method"): kafkatransport.IdempotencyLevelOf, which the
// transport's client also goes by when it retries (kafkatransport.RetryPolicy).
// IDEMPOTENCY_UNKNOWN means side effects, also for a method it does not
// find; the methods of grpc.health.v1.Health are NO_SIDE_EFFECTS.
func LevelOf(fullMethod string) descriptorpb.MethodOptions_IdempotencyLevel {
	return kafkatransport.IdempotencyLevelOf(fullMethod)
}
