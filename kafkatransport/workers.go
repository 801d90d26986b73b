package kafkatransport

// workers runs the server's request handlers on goroutines that it keeps
// for the next request instead of starting one per request. A handler's
// stack grows as deep as its call (a SQLite read through database/sql runs
// tens of kilobytes deep); a new goroutine grows it again from a few
// kilobytes, copying it at each doubling, which cost about a tenth of a
// busy service's CPU. An idle worker waits for work until Serve stops.
// There are about as many as handlers ever ran at once, which the
// server's concurrency limit bounds (a worker releases its slot just
// before it waits for work, so a few more may start in that moment).
type workers struct {
	jobs chan *request // unbuffered: a send succeeds only when a worker waits
	stop chan struct{}
}

func newWorkers() *workers {
	return &workers{jobs: make(chan *request), stop: make(chan struct{})}
}

// handle has req's lane handle it (lane.handle) on an idle worker, or on
// a new one when none is idle.
func (w *workers) handle(req *request) {
	select {
	case w.jobs <- req:
	default:
		go w.work(req)
	}
}

// work handles req and then the requests it is given, until close.
func (w *workers) work(req *request) {
	for {
		req.lane.handle(req)
		select {
		case req = <-w.jobs:
		case <-w.stop:
			return
		}
	}
}

// close ends the idle workers, and the busy ones once their work is done.
func (w *workers) close() { close(w.stop) }
