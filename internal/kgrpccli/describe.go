package kgrpccli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// describe prints symbol's descriptor in protobuf syntax: a service with
// its methods, a method, a message with its fields, or an enum.
func describe(ctx context.Context, o options, symbol string, out io.Writer) error {
	ctx, cancel := withTimeout(ctx, o)
	defer cancel()
	c, err := discover(ctx, o)
	if err != nil {
		return err
	}
	defer c.close()
	d, err := c.resolve(ctx, strings.TrimPrefix(symbol, "."))
	if err != nil {
		return err
	}
	var sb strings.Builder
	switch d := d.(type) {
	case protoreflect.ServiceDescriptor:
		fmt.Fprintf(&sb, "%s is a service", d.FullName())
		if u, ok := c.serves[string(d.FullName())]; ok {
			fmt.Fprintf(&sb, " served by unit %s", u)
		}
		fmt.Fprintf(&sb, " (%s):\nservice %s {\n", d.ParentFile().Path(), d.Name())
		for i := range d.Methods().Len() {
			sb.WriteString("  " + methodLine(d.Methods().Get(i)) + "\n")
		}
		sb.WriteString("}\n")
	case protoreflect.MethodDescriptor:
		fmt.Fprintf(&sb, "%s is a method:\n%s\n", d.FullName(), methodLine(d))
	case protoreflect.MessageDescriptor:
		fmt.Fprintf(&sb, "%s is a message (%s):\n", d.FullName(), d.ParentFile().Path())
		writeMessage(&sb, d, "")
	case protoreflect.EnumDescriptor:
		fmt.Fprintf(&sb, "%s is an enum (%s):\n", d.FullName(), d.ParentFile().Path())
		writeEnum(&sb, d, "")
	default:
		fmt.Fprintf(&sb, "%s is a %T\n", d.FullName(), d)
	}
	_, err = io.WriteString(out, sb.String())
	return err
}

// methodLine renders a method as in a .proto file.
func methodLine(m protoreflect.MethodDescriptor) string {
	stream := func(b bool) string {
		if b {
			return "stream "
		}
		return ""
	}
	return fmt.Sprintf("rpc %s(%s.%s) returns (%s.%s);", m.Name(), stream(m.IsStreamingClient()), m.Input().FullName(),
		stream(m.IsStreamingServer()), m.Output().FullName())
}

// writeMessage renders m, with its nested enums and messages.
func writeMessage(sb *strings.Builder, m protoreflect.MessageDescriptor, indent string) {
	fmt.Fprintf(sb, "%smessage %s {\n", indent, m.Name())
	for i := range m.Enums().Len() {
		writeEnum(sb, m.Enums().Get(i), indent+"  ")
	}
	for i := range m.Messages().Len() {
		if nm := m.Messages().Get(i); !nm.IsMapEntry() {
			writeMessage(sb, nm, indent+"  ")
		}
	}
	for i := range m.Fields().Len() {
		f := m.Fields().Get(i)
		label := ""
		switch {
		case f.IsMap():
		case f.IsList():
			label = "repeated "
		case f.HasOptionalKeyword():
			label = "optional "
		}
		fmt.Fprintf(sb, "%s  %s%s %s = %d;\n", indent, label, fieldType(f), f.Name(), f.Number())
	}
	fmt.Fprintf(sb, "%s}\n", indent)
}

// fieldType is f's type as written in a .proto file.
func fieldType(f protoreflect.FieldDescriptor) string {
	if f.IsMap() {
		return fmt.Sprintf("map<%s, %s>", fieldType(f.MapKey()), fieldType(f.MapValue()))
	}
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "." + string(f.Message().FullName())
	case protoreflect.EnumKind:
		return "." + string(f.Enum().FullName())
	}
	return f.Kind().String()
}

// writeEnum renders e.
func writeEnum(sb *strings.Builder, e protoreflect.EnumDescriptor, indent string) {
	fmt.Fprintf(sb, "%senum %s {\n", indent, e.Name())
	for i := range e.Values().Len() {
		v := e.Values().Get(i)
		fmt.Fprintf(sb, "%s  %s = %d;\n", indent, v.Name(), v.Number())
	}
	fmt.Fprintf(sb, "%s}\n", indent)
}
