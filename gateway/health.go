package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/breaker"
)

// readyzTimeout bounds /readyz: every check runs at once within it.
const readyzTimeout = 3 * time.Second

// healthz serves GET /healthz: the process is up.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports ready when the broker answers (Ping), the Health checks
// pass and every service's unit answers the health protocol's Check for
// the service SERVING. Its body names each check with "ok" or why not:
// "NOT_SERVING: <the unit's reason>" (say "NOT_SERVING: database: ..."),
// "unavailable: ..." when the unit does not answer, "<code>: ..." for any
// other failure of the call.
//
// With a Config.Breaker, the body also has "circuits": the state of each
// service's circuit that is not closed ("open", "half-open"), by service
// name, empty while all are closed. They show; they do not decide
// readiness: the gateway still serves the other services, and the health
// checks, which the breaker lets through, say whether a service answers.
func (g *gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyzTimeout)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"users":    serving(g.cfg.UsersHealth, usersv1.UserService_ServiceDesc.ServiceName),
		"products": serving(g.cfg.ProductsHealth, productsv1.ProductService_ServiceDesc.ServiceName),
		"orders":   serving(g.cfg.OrdersHealth, ordersv1.OrderService_ServiceDesc.ServiceName),
	}
	if g.cfg.Ping != nil {
		checks["broker"] = g.cfg.Ping
	}
	for name, h := range g.cfg.Health {
		checks[name] = func(context.Context) error { return h() }
	}
	var mu sync.Mutex
	results := map[string]string{}
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Go(func() {
			res := "ok"
			if err := check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			results[name] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	code := http.StatusOK
	for _, res := range results {
		if res != "ok" {
			code = http.StatusServiceUnavailable
		}
	}
	body := map[string]any{"ready": code == http.StatusOK, "checks": results}
	if g.cfg.Breaker != nil {
		circuits := map[string]string{}
		for name, st := range g.cfg.Breaker.States() {
			if st != breaker.StateClosed {
				circuits[name] = st.String()
			}
		}
		body["circuits"] = circuits
	}
	writeJSON(w, code, body)
}

// serving returns the check that asks c whether service is SERVING: nil
// when it is, else why not, with the reason the unit gives in the trailer
// kafkatransport.HealthReasonKey.
func serving(c grpc_health_v1.HealthClient, service string) func(context.Context) error {
	return func(ctx context.Context) error {
		var trailer metadata.MD
		resp, err := c.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: service}, grpc.Trailer(&trailer))
		if err != nil {
			st := status.Convert(err)
			switch st.Code() {
			case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
				return fmt.Errorf("unavailable: %s", st.Message())
			}
			return fmt.Errorf("%s: %s", st.Code(), st.Message())
		}
		if resp.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING {
			return nil
		}
		if reason := strings.Join(trailer.Get(kafkatransport.HealthReasonKey), "; "); reason != "" {
			return fmt.Errorf("%s: %s", resp.GetStatus(), reason)
		}
		return errors.New(resp.GetStatus().String())
	}
}
