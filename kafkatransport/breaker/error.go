package breaker

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kgrpc/platform/kafkatransport"
)

// Reasons of the google.rpc.ErrorInfo (domain kafkatransport.ErrorDomain)
// of a call the Breaker refused.
const (
	// ReasonCircuitOpen: the service's circuit is open, or half-open with
	// its probes running.
	ReasonCircuitOpen = "CIRCUIT_OPEN"
	// ReasonOverloaded: the service has WithMaxInFlight calls in flight.
	ReasonOverloaded = "OVERLOADED"
)

// refusal returns the Unavailable error of a call to service that was not
// sent, for reason, saying why and when to retry.
func refusal(service, reason, why string, retry time.Duration) error {
	retry = max(retry, time.Millisecond)
	st := status.Newf(codes.Unavailable, "%s: %s; retry in %v", service, why, retry.Round(time.Millisecond))
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: reason, Domain: kafkatransport.ErrorDomain, Metadata: map[string]string{"service": service}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
	); err == nil {
		st = d
	}
	return st.Err()
}

// Reason returns the reason of err if it is a Breaker's refusal, here or
// passed on by a service from its own Breaker (ReasonCircuitOpen,
// ReasonOverloaded), and "" otherwise.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == kafkatransport.ErrorDomain {
			switch r := info.GetReason(); r {
			case ReasonCircuitOpen, ReasonOverloaded:
				return r
			}
		}
	}
	return ""
}

// State is a circuit's state. Its numbers are those of the metric
// kgrpc_client_circuit_state.
type State int

// The states of a circuit.
const (
	// StateClosed: calls go through.
	StateClosed State = 0
	// StateHalfOpen: probes go through; other calls fail at once.
	StateHalfOpen State = 1
	// StateOpen: every call fails at once.
	StateOpen State = 2
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	}
	return fmt.Sprintf("State(%d)", int(s))
}
