// Package app wires the shop's services, the gateway and the embedded broker
// into runnable units. The binaries in cmd/ are thin: they parse flags and
// call these functions. Each Run function blocks until its context ends and
// then shuts its unit down gracefully: in-flight calls drain, outbox events
// keep their place, databases close.
package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
)

// Common is what every unit needs.
type Common struct {
	// Brokers is the Kafka bootstrap list.
	Brokers string
	// Signer signs and verifies the shop's tokens.
	Signer *auth.Signer
	// Logger is the root logger; each unit adds its name.
	Logger *slog.Logger
	// Kafka are extra transport options for every unit (librdkafka
	// settings, topic prefix, instance id).
	Kafka []kafkatransport.Option
}

func (c Common) kafkaOptions(logger *slog.Logger, extra ...kafkatransport.Option) []kafkatransport.Option {
	opts := append([]kafkatransport.Option{kafkatransport.WithLogger(logger)}, c.Kafka...)
	return append(opts, extra...)
}

// newServer returns a transport server with the shop's interceptors: call
// logging outermost, then token verification.
func (c Common) newServer(logger *slog.Logger) *kafkatransport.Server {
	return kafkatransport.NewServer(c.Brokers, c.kafkaOptions(logger,
		kafkatransport.WithUnaryServerInterceptors(logCalls(logger), auth.UnaryServerInterceptor(c.Signer)))...)
}

// logCalls logs every call at debug level, and failures with a server-side
// code (Internal, Unknown, DataLoss) at error level.
func logCalls(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		st := status.Convert(err)
		level := slog.LevelDebug
		switch st.Code().String() {
		case "Internal", "Unknown", "DataLoss":
			level = slog.LevelError
		}
		logger.Log(ctx, level, "rpc", "method", info.FullMethod, "code", st.Code().String(), "duration", time.Since(start))
		return resp, err
	}
}

// runAll runs every function until ctx ends or one fails; a failure stops
// the others. It returns when all have returned, with the first error.
func runAll(ctx context.Context, fns ...func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				once.Do(func() { first = err })
				cancel()
			}
		}()
	}
	wg.Wait()
	return first
}
