package idempotency

import (
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
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
	if md := find(fullMethod); md != nil && levelOf(md) == descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN {
		if out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName()); err == nil {
			m = method{sideEffects: true, output: out}
		}
	}
	ms.m.Store(fullMethod, m)
	return m
}

// find returns the descriptor of the method named fullMethod
// ("/pkg.Service/Method") in protoregistry.GlobalFiles, or nil.
func find(fullMethod string) protoreflect.MethodDescriptor {
	svc, name, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	return sd.Methods().ByName(protoreflect.Name(name))
}

// levelOf returns the idempotency level of md: its option, or, for a
// service in readOnly, NO_SIDE_EFFECTS.
func levelOf(md protoreflect.MethodDescriptor) descriptorpb.MethodOptions_IdempotencyLevel {
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	if l := opts.GetIdempotencyLevel(); l != descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN || !readOnly[md.Parent().FullName()] {
		return l
	}
	return descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// readOnly are the standard services whose methods only read, although
// their proto files do not say so: a health check must neither write an
// outcome to the store (which may be what is down) nor wait for it.
var readOnly = map[protoreflect.FullName]bool{"grpc.health.v1.Health": true}

// LevelOf returns the idempotency level of the method named fullMethod
// ("/pkg.Service/Method") as its service descriptor in protoregistry gives
// it: IDEMPOTENCY_UNKNOWN, meaning side effects, for a method without the
// option or one it does not find. The methods of grpc.health.v1.Health are
// NO_SIDE_EFFECTS.
func LevelOf(fullMethod string) descriptorpb.MethodOptions_IdempotencyLevel {
	if md := find(fullMethod); md != nil {
		return levelOf(md)
	}
	return descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
}
