package kgrpccli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// cluster is what kgrpc learned of a cluster: its units (from their
// reflection topics), the services each serves, and the protobuf files
// their reflection services sent.
type cluster struct {
	o       options
	conn    *kafkatransport.ClientConn
	units   []string
	serves  map[string]string // service full name -> unit
	files   *protoregistry.Files
	fileSet map[string]*descriptorpb.FileDescriptorProto
}

// perUnit are the services every unit serves on a topic of its own.
var perUnit = []string{grpc_health_v1.Health_ServiceDesc.ServiceName, grpc_reflection_v1.ServerReflection_ServiceDesc.ServiceName}

// discover finds the units of the cluster and asks each which services it
// serves.
func discover(ctx context.Context, o options) (*cluster, error) {
	units, err := reflectionUnits(ctx, o)
	if err != nil {
		return nil, err
	}
	if len(units) == 0 {
		return nil, fmt.Errorf("no unit serves reflection on %s: no topic %s%s<unit> (is the prefix right? kafkatransport.RegisterReflection)", o.brokers, o.prefix, kafkatransport.ReflectionTopicPrefix)
	}
	conn, err := dial(ctx, o, trust.Policy{PerUnit: perUnit})
	if err != nil {
		return nil, err
	}
	c := &cluster{o: o, conn: conn, units: units, serves: map[string]string{}, fileSet: map[string]*descriptorpb.FileDescriptorProto{}}
	var errs []error
	for _, u := range units {
		names, err := c.listServices(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("unit %s: %w", u, err))
			continue
		}
		for _, n := range names {
			if !slices.Contains(perUnit, n) {
				c.serves[n] = u
			}
		}
	}
	if len(c.serves) == 0 && len(errs) > 0 {
		_ = conn.Close()
		return nil, errors.Join(errs...)
	}
	for _, e := range errs {
		fmt.Fprintln(os.Stderr, "kgrpc: warning:", e)
	}
	return c, nil
}

// close closes the cluster's client.
func (c *cluster) close() { _ = c.conn.Close() }

// reflectionUnits returns the units that have a reflection topic.
func reflectionUnits(ctx context.Context, o options) ([]string, error) {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": o.brokers, "log_level": 0})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	ms := 10_000
	if d, ok := ctx.Deadline(); ok {
		ms = max(1, int(time.Until(d).Milliseconds()))
	}
	md, err := admin.GetMetadata(nil, true, ms)
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", o.brokers, err)
	}
	prefix := o.prefix + kafkatransport.ReflectionTopicPrefix
	var units []string
	for name := range md.Topics {
		if u, ok := strings.CutPrefix(name, prefix); ok && u != "" && !strings.Contains(u, ".") {
			units = append(units, u)
		}
	}
	slices.Sort(units)
	return units, nil
}

// dial opens a client of the cluster, with a Guard under policy when kgrpc
// has a unit key.
func dial(ctx context.Context, o options, policy trust.Policy) (*kafkatransport.ClientConn, error) {
	opts := []kafkatransport.ClientOption{kafkatransport.WithTopicPrefix(o.prefix), kafkatransport.WithLogger(slog.New(slog.DiscardHandler))}
	if o.unitKey != "" || o.keyring != "" {
		if o.unitKey == "" || o.keyring == "" {
			return nil, usagef("--unit-key and --keyring go together")
		}
		key, err := trust.LoadUnitKey(o.unitKey)
		if err != nil {
			return nil, err
		}
		ring, err := trust.LoadKeyring(o.keyring)
		if err != nil {
			return nil, err
		}
		g, err := trust.NewGuard(key, ring, policy)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kafkatransport.WithGuard(g))
	}
	return kafkatransport.Dial(ctx, o.brokers, opts...)
}

// reflect runs one reflection request on unit's reflection service.
func (c *cluster) reflect(ctx context.Context, unit string, req *grpc_reflection_v1.ServerReflectionRequest) (*grpc_reflection_v1.ServerReflectionResponse, error) {
	cl := grpc_reflection_v1.NewServerReflectionClient(c.conn.Service(kafkatransport.ReflectionSpec(unit)))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cl.ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(req); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	_ = stream.CloseSend()
	if e := resp.GetErrorResponse(); e != nil {
		return nil, fmt.Errorf("reflection: %s (code %d)", e.GetErrorMessage(), e.GetErrorCode())
	}
	return resp, nil
}

// listServices returns the services unit serves.
func (c *cluster) listServices(ctx context.Context, unit string) ([]string, error) {
	resp, err := c.reflect(ctx, unit, &grpc_reflection_v1.ServerReflectionRequest{
		MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// resolve returns the descriptor of symbol (a service, method, message or
// enum full name), fetching its file and their dependencies from the unit
// that serves it, or from each unit in turn.
func (c *cluster) resolve(ctx context.Context, symbol string) (protoreflect.Descriptor, error) {
	if c.files != nil {
		if d, err := c.files.FindDescriptorByName(protoreflect.FullName(symbol)); err == nil {
			return d, nil
		}
	}
	units := c.units
	if u, ok := c.serves[symbol]; ok {
		units = []string{u}
	} else if i := strings.LastIndexByte(symbol, '.'); i > 0 {
		if u, ok := c.serves[symbol[:i]]; ok { // a method: Service.Method
			units = []string{u}
		}
	}
	var lastErr error
	for _, u := range units {
		resp, err := c.reflect(ctx, u, &grpc_reflection_v1.ServerReflectionRequest{
			MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}})
		if err != nil {
			lastErr = err
			continue
		}
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(b, fd); err != nil {
				return nil, fmt.Errorf("reflection sent an undecodable file: %w", err)
			}
			c.fileSet[fd.GetName()] = fd
		}
		set := &descriptorpb.FileDescriptorSet{}
		for _, fd := range c.fileSet {
			set.File = append(set.File, fd)
		}
		files, err := protodesc.NewFiles(set)
		if err != nil {
			return nil, fmt.Errorf("the files reflection sent: %w", err)
		}
		c.files = files
		if d, err := files.FindDescriptorByName(protoreflect.FullName(symbol)); err == nil {
			return d, nil
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%s: %w", symbol, lastErr)
	}
	return nil, fmt.Errorf("%s: no unit knows this symbol", symbol)
}

// list prints the services of the cluster, one per line.
func list(ctx context.Context, o options, out io.Writer) error {
	ctx, cancel := withTimeout(ctx, o)
	defer cancel()
	c, err := discover(ctx, o)
	if err != nil {
		return err
	}
	defer c.close()
	var names []string
	for n := range c.serves {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintln(out, n)
	}
	return nil
}

// withTimeout bounds ctx by --timeout.
func withTimeout(ctx context.Context, o options) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.timeout)
}
