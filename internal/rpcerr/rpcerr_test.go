package rpcerr

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestInternal(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name    string
		ctx     context.Context
		want    codes.Code
		wantLog bool
	}{
		{"live context", context.Background(), codes.Internal, true},
		{"canceled", canceled, codes.Canceled, false},
		{"deadline exceeded", expired, codes.DeadlineExceeded, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			err := Internal(tc.ctx, logger, "svc: do thing", errors.New("disk on fire"))
			st := status.Convert(err)
			if st.Code() != tc.want {
				t.Fatalf("code %v, want %v", st.Code(), tc.want)
			}
			if strings.Contains(st.Message(), "disk on fire") {
				t.Fatalf("status message %q leaks the failure", st.Message())
			}
			logged := strings.Contains(logs.String(), "svc: do thing") && strings.Contains(logs.String(), "disk on fire")
			if logged != tc.wantLog {
				t.Fatalf("logged %v, want %v: %q", logged, tc.wantLog, logs.String())
			}
		})
	}
}
