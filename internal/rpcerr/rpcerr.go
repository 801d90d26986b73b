package rpcerr

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Internal logs err at error level under msg (for example "usersvc: create
// user") and returns an Internal status without err's details; when ctx is
// done it logs nothing and returns the status of ctx's end instead
// (Canceled or DeadlineExceeded), since the failure is then most likely
// that end.
func Internal(ctx context.Context, logger *slog.Logger, msg string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	logger.ErrorContext(ctx, msg, "err", err)
	return status.Error(codes.Internal, "internal error")
}
