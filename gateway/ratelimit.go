package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// limitedRoutes are the routes that guess or create credentials: login and
// registration.
var limitedRoutes = map[string]bool{"/v1/auth:login": true, "/v1/users": true}

// maxLimiters bounds the limiters kept; past it, idle ones are dropped
// first, then the oldest.
const maxLimiters = 100_000

// limiters are token buckets by key, each refilled at perMinute a minute
// and holding at most perMinute.
type limiters struct {
	perMinute int
	mu        sync.Mutex
	m         map[string]*limiter
}

type limiter struct {
	*rate.Limiter
	used time.Time
}

// wait takes a token of key's bucket, or returns how long until one is
// there.
func (l *limiters) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) >= maxLimiters {
			l.prune(now)
		}
		lim = &limiter{Limiter: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.m[key] = lim
	}
	lim.used = now
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// prune drops the limiters unused for a minute (their buckets are full
// again), or, when none is, half of them.
func (l *limiters) prune(now time.Time) {
	for k, lim := range l.m {
		if now.Sub(lim.used) > time.Minute {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < maxLimiters/2 {
			break
		}
		delete(l.m, k)
	}
}

// rateLimitAuth limits login and registration attempts to perMinute a
// minute for each client address and for each email (bursts of as many):
// a request over either limit is 429 RESOURCE_EXHAUSTED with Retry-After,
// and is not forwarded. perMinute 0 turns it off. The client address is
// the connection's (a proxy in front must be trusted to spread its clients
// some other way).
func rateLimitAuth(perMinute int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if perMinute <= 0 {
			return next
		}
		byAddr := &limiters{perMinute: perMinute, m: map[string]*limiter{}}
		byEmail := &limiters{perMinute: perMinute, m: map[string]*limiter{}}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || !limitedRoutes[r.URL.Path] {
				next.ServeHTTP(w, r)
				return
			}
			now := time.Now()
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			wait := byAddr.wait(host, now)
			if wait == 0 {
				email, body, err := emailOf(r.Body)
				if err != nil {
					writeError(w, r, status.Error(codes.InvalidArgument, "request body: "+err.Error()))
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				if email != "" {
					wait = byEmail.wait(email, now)
				}
			}
			if wait > 0 {
				secs := setRetryAfter(w, wait)
				writeError(w, r, status.Error(codes.ResourceExhausted, fmt.Sprintf("too many login or registration attempts; retry in %d s", secs)))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// emailOf reads a request body and returns its JSON "email" field,
// lower-cased and trimmed ("" when there is none or the body is not a JSON
// object: the decoder then refuses it), and the body read.
func emailOf(body io.Reader) (string, []byte, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", nil, err
	}
	var v struct {
		Email string `json:"email"`
	}
	_ = json.Unmarshal(b, &v)
	return strings.ToLower(strings.TrimSpace(v.Email)), b, nil
}
