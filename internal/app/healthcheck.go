package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
)

// DBCheckTimeout bounds a service's database check: a database that has not
// answered SELECT 1 by then does not answer.
const DBCheckTimeout = time.Second

// serveHealth registers the unit's health service (grpc.health.v1.Health)
// on its transport server, on the unit's own topic
// (kafkatransport.HealthSpec(unit)), and returns the unit's readiness
// checks: the Health of the subscribers build added and of the server,
// and its database's. Call it after build, before Serve.
func (u *serviceUnit) serveHealth(unit string, db *sql.DB) []func() error {
	checks := append(slices.Clone(u.health), u.srv.Health)
	ping := pingDB(db)
	h := &healthServer{services: u.srv.GetServiceInfo, checks: []func(context.Context) error{ping}}
	for _, check := range checks {
		h.checks = append(h.checks, func(context.Context) error { return check() })
	}
	grpc_health_v1.RegisterHealthServer(u.srv, h)
	u.srv.Describe(kafkatransport.HealthSpec(unit))
	// Ready's checks take no context: /readyz has its own timeout.
	return append(checks, func() error { return ping(context.Background()) })
}

// healthClient returns the client of unit's health service over conn.
func healthClient(conn *kafkatransport.ClientConn, unit string) grpc_health_v1.HealthClient {
	return grpc_health_v1.NewHealthClient(conn.Service(kafkatransport.HealthSpec(unit)))
}

// pingDB returns the check of db: SELECT 1 answered within DBCheckTimeout,
// else an error that starts with "database: ".
func pingDB(db *sql.DB) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, DBCheckTimeout)
		defer cancel()
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		return nil
	}
}

// healthServer is a service unit's grpc.health.v1.Health: it knows the
// overall name "" and every service registered on the unit's transport
// server, and runs the unit's checks at each Check and List. They all
// share the unit's database and server, so every name has the unit's
// status: SERVING while every check passes, else NOT_SERVING with the
// failures, one per line joined by "; ", in the trailer
// kafkatransport.HealthReasonKey.
//
// Checking live, rather than feeding grpc-go's health.Server from a loop,
// makes an answer as fresh as the check itself, costs nothing while nobody
// asks, and needs no goroutine to stop; a check is one SELECT 1 and a few
// in-memory reads, and callers ask every few seconds at most.
type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
	// services returns the transport server's services
	// (kafkatransport.Server.GetServiceInfo).
	services func() map[string]grpc.ServiceInfo
	// checks return nil while the unit is healthy, else why not.
	checks []func(context.Context) error
}

// Check implements grpc_health_v1.HealthServer.
func (h *healthServer) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	if !slices.Contains(h.names(), req.GetService()) {
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	return &grpc_health_v1.HealthCheckResponse{Status: h.status(ctx)}, nil
}

// List implements grpc_health_v1.HealthServer.
func (h *healthServer) List(ctx context.Context, _ *grpc_health_v1.HealthListRequest) (*grpc_health_v1.HealthListResponse, error) {
	st := h.status(ctx)
	resp := &grpc_health_v1.HealthListResponse{Statuses: map[string]*grpc_health_v1.HealthCheckResponse{}}
	for _, name := range h.names() {
		resp.Statuses[name] = &grpc_health_v1.HealthCheckResponse{Status: st}
	}
	return resp, nil
}

// names returns "" and the names of the services the unit serves, the
// health service aside.
func (h *healthServer) names() []string {
	names := []string{""}
	for name := range h.services() {
		if name != grpc_health_v1.Health_ServiceDesc.ServiceName {
			names = append(names, name)
		}
	}
	return names
}

// status runs the checks and returns the unit's status, setting the
// reason trailer when it is NOT_SERVING.
func (h *healthServer) status(ctx context.Context) grpc_health_v1.HealthCheckResponse_ServingStatus {
	var errs []error
	for _, check := range h.checks {
		errs = append(errs, check(ctx))
	}
	err := errors.Join(errs...)
	if err == nil {
		return grpc_health_v1.HealthCheckResponse_SERVING
	}
	// One line: a metadata value must not hold a newline over HTTP/2.
	reason := strings.ReplaceAll(err.Error(), "\n", "; ")
	_ = grpc.SetTrailer(ctx, metadata.Pairs(kafkatransport.HealthReasonKey, reason))
	return grpc_health_v1.HealthCheckResponse_NOT_SERVING
}
