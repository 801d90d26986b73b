package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
)

// healthz serves GET /healthz: the process is up.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports ready when the broker answers and every service answers a
// call (any status from the service itself counts; a transport failure or a
// timeout does not).
func (g *gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"users": func(ctx context.Context) error {
			_, err := g.cfg.Users.GetUser(ctx, &usersv1.GetUserRequest{Id: "readyz"})
			return answered(err)
		},
		"products": func(ctx context.Context) error {
			_, err := g.cfg.Products.GetProduct(ctx, &productsv1.GetProductRequest{Id: "readyz"})
			return answered(err)
		},
		"orders": func(ctx context.Context) error {
			_, err := g.cfg.Orders.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: "readyz"})
			return answered(err)
		},
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
	writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "checks": results})
}

// answered turns the error of a readiness call into nil when the service
// itself answered.
func answered(err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return err
	}
	return nil
}
