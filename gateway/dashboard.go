package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
)

// dashboardRecentOrders is how many of the latest orders the dashboard
// shows.
const dashboardRecentOrders = 5

// dashboard serves GET /v1/users/{id}/dashboard: the user, their latest
// orders and their order count, fetched in parallel. The services authorize
// each call as the verified caller (the principal the gateway forwards), so
// the endpoint shows only what the caller may see.
func (g *gateway) dashboard(w http.ResponseWriter, r *http.Request, params map[string]string) {
	ctx, err := runtime.AnnotateContext(r.Context(), g.mux, r, usersv1.UserService_GetUser_FullMethodName)
	if err != nil {
		writeError(w, r, err)
		return
	}
	id := params["id"]
	var (
		wg       sync.WaitGroup
		user     *usersv1.GetUserResponse
		orders   *ordersv1.ListUserOrdersResponse
		userErr  error
		orderErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		user, userErr = g.cfg.Users.GetUser(ctx, &usersv1.GetUserRequest{Id: id})
	}()
	go func() {
		defer wg.Done()
		orders, orderErr = g.cfg.Orders.ListUserOrders(ctx, &ordersv1.ListUserOrdersRequest{UserId: id, PageSize: dashboardRecentOrders})
	}()
	wg.Wait()
	if userErr != nil {
		writeError(w, r, userErr)
		return
	}
	if orderErr != nil {
		writeError(w, r, orderErr)
		return
	}
	writeJSON(w, http.StatusOK, dashboardBody(ctx, user.GetUser(), orders))
}

// dashboardBody builds the dashboard JSON with protojson for the messages,
// so field names and enum and time formats match the rest of the API.
func dashboardBody(_ context.Context, user *usersv1.User, orders *ordersv1.ListUserOrdersResponse) any {
	m := protojson.MarshalOptions{EmitUnpopulated: true}
	recent := make([]json.RawMessage, 0, len(orders.GetOrders()))
	for _, o := range orders.GetOrders() {
		b, _ := m.Marshal(o)
		recent = append(recent, b)
	}
	u, _ := m.Marshal(user)
	return struct {
		User         json.RawMessage   `json:"user"`
		RecentOrders []json.RawMessage `json:"recentOrders"`
		OrderCount   int32             `json:"orderCount"`
	}{u, recent, orders.GetTotalSize()}
}
