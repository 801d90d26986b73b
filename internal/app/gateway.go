package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kgrpc/platform/gateway"
	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
)

// GatewayConfig configures the gateway unit.
type GatewayConfig struct {
	// HTTPAddr is the listen address.
	HTTPAddr string
	// RequestTimeout bounds each API request. Default: 10s.
	RequestTimeout time.Duration
	// MaxStreamDuration bounds each streaming API request. Default: 1h.
	MaxStreamDuration time.Duration
	// MaxStreamsPerUser is gateway.Config.MaxStreamsPerUser.
	MaxStreamsPerUser int
	// MaxInFlightPerService bounds the calls the gateway has in flight to
	// each service; more answer 503 UNAVAILABLE at once, with Retry-After
	// (breaker.WithMaxInFlight). Default: breaker.DefaultMaxInFlight.
	MaxInFlightPerService int
	// CORSOrigins are the browser origins allowed to call the API.
	CORSOrigins []string
	// AuthRateLimit is gateway.Config.AuthRateLimit.
	AuthRateLimit int
	// Listening, when set, is called with the bound address once the
	// gateway accepts connections.
	Listening func(addr string)
}

// RunGateway serves the REST API until ctx ends, then stops accepting,
// finishes in-flight requests (at most 15s) and closes its Kafka client.
func RunGateway(ctx context.Context, c Common, cfg GatewayConfig) error {
	u, err := c.unit(UnitGateway)
	if err != nil {
		return err
	}
	log := u.log
	verifier, err := auth.NewVerifier(c.Trust.Ring, UnitUsers)
	if err != nil {
		return err
	}
	b, err := newBreaker(u, cfg.MaxInFlightPerService)
	if err != nil {
		return err
	}
	conn, err := kafkatransport.Dial(ctx, c.Brokers, c.clientOptions(u, b)...)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Revoked tokens, from the users service's events; the watch stops
	// with ctx, and its failure stops the gateway.
	rev := auth.NewRevocations()
	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() { watchErr <- rev.Watch(watchCtx, c.Brokers, u.kafka, c.topicOptions()) }()
	defer func() { stopWatch(); <-watchErr }()
	gcfg := gateway.Config{
		Users:             usersv1.NewUserServiceKafkaClient(conn),
		Products:          productsv1.NewProductServiceKafkaClient(conn),
		Orders:            ordersv1.NewOrderServiceKafkaClient(conn),
		UsersHealth:       healthClient(conn, UnitUsers),
		ProductsHealth:    healthClient(conn, UnitProducts),
		OrdersHealth:      healthClient(conn, UnitOrders),
		Verifier:          verifier,
		Public:            PublicMethod,
		Revoked:           rev.Revoked,
		Health:            map[string]func() error{"revocations": rev.Health},
		Breaker:           b,
		Ping:              conn.Ping,
		OpenAPI:           gateway.OpenAPI,
		RequestTimeout:    cfg.RequestTimeout,
		MaxStreamDuration: cfg.MaxStreamDuration,
		MaxStreamsPerUser: cfg.MaxStreamsPerUser,
		CORSOrigins:       cfg.CORSOrigins,
		AuthRateLimit:     cfg.AuthRateLimit,
		Logger:            log,
	}
	if u.tel != nil {
		gcfg.TracerProvider, gcfg.Metrics = u.tel.Tracer, u.tel.Registerer
	}
	h, err := gateway.New(ctx, gcfg)
	if err != nil {
		return err
	}
	if c.Telemetry != nil {
		// /metrics beside the API, outside its middleware (no rate limit,
		// no CORS): it is for the scraper.
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", c.Telemetry.Handler())
		mux.Handle("/", h)
		h = mux
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("gateway: listen: %w", err)
	}
	// The server's header limit lies above the gateway's (64 KiB), which
	// answers 431 in the API's JSON error format.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 20}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("gateway listening", "addr", "http://"+ln.Addr().String())
	if cfg.Listening != nil {
		cfg.Listening(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: %w", err)
	case err := <-watchErr:
		watchErr <- err // for the deferred wait
		_ = srv.Close()
		return fmt.Errorf("gateway: watch revoked tokens: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	return nil
}
