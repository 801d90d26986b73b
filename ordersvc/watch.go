package ordersvc

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	"github.com/kgrpc/platform/internal/auth"
)

// watchBuffer is how many status changes of one order a watcher holds
// before it is ended as lagging: an order changes status a few times in
// its life, so only a stream whose client stopped reading fills it.
const watchBuffer = 16

// Watches hands the OrderStatusChanged events an instance reads to the
// WatchOrder streams it serves. Every instance reads every such event
// (kafkatransport.Watch, no consumer group), so a status change made
// through any instance reaches the watchers of all of them. The zero value
// is not usable: call NewWatches.
type Watches struct {
	mu      sync.Mutex
	byOrder map[string]map[*watcher]struct{}
}

// watcher is one WatchOrder stream's subscription.
type watcher struct {
	events chan *ordersv1.OrderStatusChanged
	lagged chan struct{} // closed when events overflowed
}

// NewWatches returns an empty set of watches.
func NewWatches() *Watches {
	return &Watches{byOrder: map[string]map[*watcher]struct{}{}}
}

// Publish hands ev to the watchers of its order without blocking; a
// watcher whose buffer is full is ended as lagging. It is the handler of
// the instance's watch of OrderStatusChanged events.
func (w *Watches) Publish(_ context.Context, ev *ordersv1.OrderStatusChanged) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wt := range w.byOrder[ev.GetOrderId()] {
		select {
		case wt.events <- ev:
		default:
			select {
			case <-wt.lagged:
			default:
				close(wt.lagged)
			}
		}
	}
	return nil
}

// add subscribes a watcher to the events of order id.
func (w *Watches) add(id string) *watcher {
	wt := &watcher{events: make(chan *ordersv1.OrderStatusChanged, watchBuffer), lagged: make(chan struct{})}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byOrder[id] == nil {
		w.byOrder[id] = map[*watcher]struct{}{}
	}
	w.byOrder[id][wt] = struct{}{}
	return wt
}

// remove ends a watcher's subscription.
func (w *Watches) remove(id string, wt *watcher) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.byOrder[id], wt)
	if len(w.byOrder[id]) == 0 {
		delete(w.byOrder, id)
	}
}

// count returns how many watchers are subscribed, for tests.
func (w *Watches) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ws := range w.byOrder {
		n += len(ws)
	}
	return n
}

// terminal reports whether an order in status s changes no more.
func terminal(s ordersv1.OrderStatus) bool {
	return s == ordersv1.OrderStatus_ORDER_STATUS_DELIVERED || s == ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
}

// WatchOrder streams an order: as it is now, then once per status change,
// until a terminal status. The watcher subscribes before it reads the
// order, so no change is lost in between; events the order already
// reflects (whose old status is not the order's status) are skipped, since
// an order's status never goes back.
func (s *Service) WatchOrder(req *ordersv1.WatchOrderRequest, stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	ctx := stream.Context()
	c, err := auth.Require(ctx)
	if err != nil {
		return err
	}
	id := req.GetId()
	if s.cfg.Watches == nil {
		return status.Error(codes.Unimplemented, "this instance does not serve order watches")
	}
	wt := s.cfg.Watches.add(id)
	defer s.cfg.Watches.remove(id, wt)
	o, err := s.cfg.Repo.Get(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && !mayAccess(c, o)) {
		return notFound(id)
	}
	if err != nil {
		return s.internal(ctx, "get order", err)
	}
	cur := toProto(o)
	if err := stream.Send(&ordersv1.WatchOrderResponse{Order: cur}); err != nil {
		return err
	}
	for !terminal(cur.GetStatus()) {
		select {
		case ev := <-wt.events:
			if ev.GetOldStatus() != cur.GetStatus() {
				continue // a change the order already reflects
			}
			cur = proto.CloneOf(cur)
			cur.Status, cur.UpdateTime = ev.GetNewStatus(), ev.GetChangeTime()
			if err := stream.Send(&ordersv1.WatchOrderResponse{Order: cur}); err != nil {
				return err
			}
		case <-wt.lagged:
			return status.Error(codes.Unavailable, "order watch fell behind its status changes; watch again")
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return nil
}
