package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
)

// ErrNotEvent is returned by EventSpecOf and PublishEvent for a message type
// without the (kgrpc.kafka.v1.event) option.
var ErrNotEvent = errors.New("kafkatransport: message type has no (kgrpc.kafka.v1.event) option")

// EventSpecOf returns the EventSpec of the event message type mt, read from
// its (kgrpc.kafka.v1.event) option: the same topic and record key as the
// <Event>KafkaEvent spec protoc-gen-go-kafka generates for it. It fails with
// ErrNotEvent when mt has no such option, and with another error when the
// option's key does not name a singular string, bytes, integer, enum or
// bool field (or a dotted path to one through singular message fields).
func EventSpecOf(mt protoreflect.MessageType) (EventSpec[proto.Message], error) {
	md := mt.Descriptor()
	opts, _ := proto.GetExtension(md.Options(), kafkav1.E_Event).(*kafkav1.EventOptions)
	if opts == nil {
		return EventSpec[proto.Message]{}, fmt.Errorf("%w: %s", ErrNotEvent, md.FullName())
	}
	path, err := keyPath(md, opts.GetKey())
	if err != nil {
		return EventSpec[proto.Message]{}, fmt.Errorf("kafkatransport: event %s: key %q: %w", md.FullName(), opts.GetKey(), err)
	}
	return EventSpec[proto.Message]{
		Name:  string(md.FullName()),
		Topic: opts.GetTopic(),
		Key:   func(ev proto.Message) []byte { return keyAt(ev.ProtoReflect(), path) },
		New:   func() proto.Message { return mt.New().Interface() },
	}, nil
}

// PublishEvent publishes ev, a message of any type with the
// (kgrpc.kafka.v1.event) option, as Publish does with its EventSpecOf: for
// code that handles events of many types, such as an outbox relay. It fails
// with ErrNotEvent for a message type without the option. The publisher
// reads each type's option once.
func PublishEvent(ctx context.Context, p *Publisher, ev proto.Message) error {
	mt := ev.ProtoReflect().Type()
	name := mt.Descriptor().FullName()
	if spec, ok := p.specs.Load(name); ok {
		return Publish(ctx, p, spec.(EventSpec[proto.Message]), ev)
	}
	spec, err := EventSpecOf(mt)
	if err != nil {
		return err
	}
	p.specs.Store(name, spec)
	return Publish(ctx, p, spec, ev)
}

// eventKeyPath resolves a key option, a field name or a dotted path through
// singular message fields, to the fields it walks.
func keyPath(md protoreflect.MessageDescriptor, key string) ([]protoreflect.FieldDescriptor, error) {
	if key == "" {
		return nil, errors.New("the event option needs a key field")
	}
	names := strings.Split(key, ".")
	path := make([]protoreflect.FieldDescriptor, 0, len(names))
	for i, name := range names {
		fd := md.Fields().ByName(protoreflect.Name(name))
		switch {
		case fd == nil:
			return nil, fmt.Errorf("message %s has no field %q", md.FullName(), name)
		case fd.IsList() || fd.IsMap():
			return nil, fmt.Errorf("field %s is repeated; a key must be a singular scalar field", fd.FullName())
		case i < len(names)-1 && fd.Kind() != protoreflect.MessageKind:
			return nil, fmt.Errorf("field %s is a %s, not a message; only message fields can be followed by '.'", fd.FullName(), fd.Kind())
		case i == len(names)-1 && (fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind ||
			fd.Kind() == protoreflect.FloatKind || fd.Kind() == protoreflect.DoubleKind):
			return nil, fmt.Errorf("field %s is a %s; a key must be a string, bytes, integer, enum or bool field", fd.FullName(), fd.Kind())
		}
		path = append(path, fd)
		md = fd.Message()
	}
	return path, nil
}

// eventKey returns the record key of m at path, encoded as the generated
// key functions do: strings and bytes as they are (an empty string is no
// key; unset bytes are none, set but empty bytes an empty key), integers
// and enum numbers in decimal, bools as "true" or "false".
func keyAt(m protoreflect.Message, path []protoreflect.FieldDescriptor) []byte {
	for _, fd := range path[:len(path)-1] {
		m = m.Get(fd).Message()
	}
	fd := path[len(path)-1]
	v := m.Get(fd)
	switch fd.Kind() {
	case protoreflect.StringKind:
		if s := v.String(); s != "" {
			return []byte(s)
		}
		return nil
	case protoreflect.BytesKind:
		// As the generated GetX(): nil (no key) when unset, an empty key
		// when set to empty bytes.
		return v.Bytes()
	case protoreflect.BoolKind:
		return strconv.AppendBool(nil, v.Bool())
	case protoreflect.EnumKind:
		return strconv.AppendInt(nil, int64(v.Enum()), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(nil, v.Uint(), 10)
	default: // signed integers
		return strconv.AppendInt(nil, v.Int(), 10)
	}
}

// KeyFuncOf returns the KeyFunc of requests of type md keyed by the field,
// or dotted path, key (a method's (kgrpc.kafka.v1.kafka_method).partition_key),
// computing keys as the functions protoc-gen-go-kafka generates do. It is
// for code that has descriptors but no generated code, such as a dynamic
// client (cmd/kgrpc). A path that cannot be a key is an error.
func KeyFuncOf(md protoreflect.MessageDescriptor, key string) (KeyFunc, error) {
	path, err := keyPath(md, key)
	if err != nil {
		return nil, err
	}
	return func(req any) []byte {
		pm, ok := req.(proto.Message)
		if !ok || pm.ProtoReflect().Descriptor().FullName() != md.FullName() {
			return nil
		}
		return keyAt(pm.ProtoReflect(), path)
	}, nil
}
