package idempotency

import (
	"context"
	"sync"

	"google.golang.org/grpc/status"
)

// flights lets one call per key run at a time in this process; the others
// wait for it and then find its outcome recorded.
type flights struct {
	mu sync.Mutex
	m  map[Key]chan struct{} // closed when the key's call ends
}

// acquire waits until no other call of k runs, then takes k; release gives
// it back. It fails with the context's status when ctx ends first.
func (f *flights) acquire(ctx context.Context, k Key) (release func(), err error) {
	for {
		f.mu.Lock()
		busy, ok := f.m[k]
		if !ok {
			done := make(chan struct{})
			f.m[k] = done
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.m, k)
				f.mu.Unlock()
				close(done)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}
