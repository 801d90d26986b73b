package kafkatransport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
)

// Server serves gRPC services over Kafka. It implements
// grpc.ServiceRegistrar, so the standard generated Register<Service>Server
// functions work with it; the generated Register<Service>KafkaServer helpers
// also apply each service's topic.
//
// Each service's instances share one consumer group on the service's request
// topic, so starting more instances adds throughput. Handlers run
// concurrently, also within a partition, except that requests with the same
// record key in a partition run one after another, in the order Kafka
// stored them (see the package doc on producer retries); a record's offset
// is committed only once its reply is produced and every earlier record of
// its partition is finished.
type Server struct {
	cfg config

	mu       sync.Mutex
	services map[string]*service
	specs    map[string]ServiceSpec
	started  bool
	ready    chan struct{}

	// What Serve sets up before it starts any goroutine.
	handler  grpc.UnaryServerInterceptor // the interceptor chain, nil for none
	producer *kafka.Producer
	base     context.Context // handlers' parent: outlives Serve's ctx for the drain
	sem      chan struct{}   // a slot per running request
	workers  *workers        // run the handlers
	stopping chan struct{}   // closed once Serve begins to stop
	lanes    []*lane
	dl       *deadLetterer
	replies  *replyAddresses // checks the reply address of each request
	streams  *streams        // nil when no service has streaming methods

	health health

	count atomic.Int64 // requests dispatched and neither finished nor abandoned
	bufs  bufferPool

	// produceMu is held shared around Produce and exclusively when the
	// producer closes; closed is set then, and replies after it are dropped.
	produceMu sync.RWMutex
	closed    bool
}

// service is one registered gRPC service.
type service struct {
	desc    *grpc.ServiceDesc
	impl    any
	methods map[string]method           // by full method name
	streams map[string]*grpc.StreamDesc // the streaming methods, by full name
}

// method is one method of a registered service.
type method struct {
	name string // full method name, "/pkg.Service/Method"
	desc *grpc.MethodDesc
}

// NewServer returns a server for the brokers (a librdkafka
// bootstrap.servers list), or the error of an invalid option. Register
// services, then call Serve.
func NewServer(brokers string, opts ...ServerOption) (*Server, error) {
	cfg, err := newConfig(brokers, opts, ServerOption.applyServer)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:      cfg,
		services: map[string]*service{},
		specs:    map[string]ServiceSpec{},
		ready:    make(chan struct{}),
		health:   health{stall: cfg.stallTimeout},
	}, nil
}

// RegisterService implements grpc.ServiceRegistrar. It panics when called
// after Serve or twice for one service, as grpc.Server does.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("kafkatransport: RegisterService after Serve")
	}
	if _, dup := s.services[desc.ServiceName]; dup {
		panic(fmt.Sprintf("kafkatransport: service %s registered twice", desc.ServiceName))
	}
	svc := &service{desc: desc, impl: impl, methods: map[string]method{}, streams: map[string]*grpc.StreamDesc{}}
	for i := range desc.Methods {
		m := &desc.Methods[i]
		name := "/" + desc.ServiceName + "/" + m.MethodName
		svc.methods[name] = method{name: name, desc: m}
	}
	for i := range desc.Streams {
		sd := &desc.Streams[i]
		svc.streams["/"+desc.ServiceName+"/"+sd.StreamName] = sd
	}
	s.services[desc.ServiceName] = svc
}

// Describe applies a service's Kafka spec (its topic). Generated
// Register<Service>KafkaServer functions call it; call it before Serve.
func (s *Server) Describe(spec ServiceSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs[spec.Name] = spec
}

// Ready is closed once Serve has joined every service's consumer group and
// started fetching requests.
func (s *Server) Ready() <-chan struct{} { return s.ready }
