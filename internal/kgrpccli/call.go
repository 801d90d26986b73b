package kgrpccli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// headers collects -H key:value flags.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// call invokes SERVICE/METHOD with the JSON of -d (an empty message
// without it) and prints the response as JSON; a server-streaming method
// prints each response.
func call(ctx context.Context, o options, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	data := fs.String("d", "", "the request as JSON (protobuf's JSON mapping)")
	var hs headers
	fs.Var(&hs, "H", "request metadata key:value (repeatable)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("usage: kgrpc call SERVICE/METHOD [-d JSON] [-H key:value]...")
	}
	target := args[0]
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		return usagef("usage: kgrpc call SERVICE/METHOD [-d JSON] [-H key:value]...")
	}
	svcName, methodName, ok := strings.Cut(strings.TrimPrefix(target, "/"), "/")
	if !ok || svcName == "" || methodName == "" {
		if i := strings.LastIndexByte(target, '.'); i > 0 && !strings.Contains(target, "/") {
			svcName, methodName = target[:i], target[i+1:] // grpcurl also takes Service.Method
		} else {
			return usagef("call: want SERVICE/METHOD, as shop.products.v1.ProductService/GetProduct; got %q", target)
		}
	}
	md := metadata.MD{}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return usagef("-H %q: want key:value", h)
		}
		md.Append(strings.TrimSpace(k), strings.TrimSpace(v))
	}

	ctx, cancel := withTimeout(ctx, o)
	defer cancel()
	c, err := discover(ctx, o)
	if err != nil {
		return err
	}
	defer c.close()
	d, err := c.resolve(ctx, svcName)
	if err != nil {
		return err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return fmt.Errorf("%s is not a service", svcName)
	}
	m := sd.Methods().ByName(protoreflect.Name(methodName))
	if m == nil {
		return fmt.Errorf("service %s has no method %s", svcName, methodName)
	}
	if m.IsStreamingClient() {
		return fmt.Errorf("%s takes a stream of requests: kgrpc calls unary and server-streaming methods", m.FullName())
	}
	req := dynamicpb.NewMessage(m.Input())
	if *data != "" {
		if err := protojson.Unmarshal([]byte(*data), req); err != nil {
			return usagef("-d: not a %s: %v", m.Input().FullName(), err)
		}
	}

	// Calls are sealed for the unit that serves the service: a client of
	// its own, whose policy names it.
	unit := c.serves[svcName]
	conn := c.conn
	if unit != "" && o.unitKey != "" {
		pkg := string(sd.ParentFile().Package())
		if conn, err = dial(ctx, o, trust.Policy{Owners: map[string]string{pkg: unit}, PerUnit: perUnit}); err != nil {
			return err
		}
		defer conn.Close()
	}
	spec, err := serviceSpec(sd)
	if err != nil {
		return err
	}
	cc := conn.Service(spec)
	ctx = metadata.NewOutgoingContext(ctx, md)
	method := fmt.Sprintf("/%s/%s", sd.FullName(), m.Name())
	printer := protojson.MarshalOptions{EmitUnpopulated: true}
	print := func(resp proto.Message) error {
		b, err := printer.Marshal(resp)
		if err != nil {
			return err
		}
		// Indented by encoding/json: protojson's own spacing varies on
		// purpose from build to build.
		var ind bytes.Buffer
		if err := json.Indent(&ind, b, "", "  "); err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", ind.Bytes())
		return err
	}
	if !m.IsStreamingServer() {
		resp := dynamicpb.NewMessage(m.Output())
		if err := cc.Invoke(ctx, method, req, resp); err != nil {
			return statusError(err)
		}
		return print(resp)
	}
	stream, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: string(m.Name()), ServerStreams: true}, method)
	if err != nil {
		return statusError(err)
	}
	if err := stream.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return statusError(err)
	}
	if err := stream.CloseSend(); err != nil {
		return statusError(err)
	}
	for {
		resp := dynamicpb.NewMessage(m.Output())
		if err := stream.RecvMsg(resp); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return statusError(err)
		}
		if err := print(resp); err != nil {
			return err
		}
	}
}

// statusError renders a call's gRPC status as grpcurl does.
func statusError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := fmt.Sprintf("ERROR:\n  Code: %s\n  Message: %s", st.Code(), st.Message())
	for _, d := range st.Proto().GetDetails() {
		msg += fmt.Sprintf("\n  Details: %s", protojson.Format(d))
	}
	return errors.New(msg)
}

// serviceSpec is the kafkatransport spec of sd from its Kafka options: its
// request topic, and the record key of each method with a partition_key,
// computed as the generated clients compute it (kafkatransport.KeyFuncOf).
func serviceSpec(sd protoreflect.ServiceDescriptor) (kafkatransport.ServiceSpec, error) {
	spec := kafkatransport.ServiceSpec{Name: string(sd.FullName()), Keys: map[string]kafkatransport.KeyFunc{}}
	if opts, ok := proto.GetExtension(sd.Options(), kafkav1.E_Kafka).(*kafkav1.ServiceKafkaOptions); ok {
		spec.Topic = opts.GetTopic()
	}
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		opts, ok := proto.GetExtension(m.Options(), kafkav1.E_KafkaMethod).(*kafkav1.MethodKafkaOptions)
		if !ok || opts.GetPartitionKey() == "" {
			continue
		}
		key, err := kafkatransport.KeyFuncOf(m.Input(), opts.GetPartitionKey())
		if err != nil {
			return spec, fmt.Errorf("%s: partition_key: %w", m.FullName(), err)
		}
		spec.Keys[fmt.Sprintf("/%s/%s", sd.FullName(), m.Name())] = key
	}
	return spec, nil
}
