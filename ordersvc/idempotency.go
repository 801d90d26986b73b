package ordersvc

import (
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// This file holds what CreateOrder adds to the platform's exactly-once
// effect (kafkatransport/idempotency, installed on every service): an
// idempotency key also names the order id, so that the reservation of an
// attempt that died is found again under it, and a retry after the
// recorded outcome expired still finds the order it made.

// IdempotencyMetadataKey is the call metadata key of an idempotency key. The
// gateway sets it from the HTTP Idempotency-Key header, or makes one up per
// HTTP request, so that a request delivered twice creates one order.
const IdempotencyMetadataKey = idempotency.MetadataKey

// MaxIdempotencyKeyLen bounds an idempotency key.
const MaxIdempotencyKeyLen = idempotency.MaxKeyLen

// orderIDFor derives the order id of a user's idempotency key.
func orderIDFor(userID, key string) string {
	h := sha256.Sum256([]byte(userID + "\x00" + key))
	return "o_" + hex.EncodeToString(h[:8])
}

// replay answers a repeated CreateOrder with the order the first one made,
// provided it is the same request.
func (s *Service) replay(o Order, userID string, lines []Item) (*ordersv1.CreateOrderResponse, error) {
	same := o.UserID == userID && len(o.Items) == len(lines)
	for i := 0; same && i < len(lines); i++ {
		same = o.Items[i].ProductID == lines[i].ProductID && o.Items[i].Quantity == lines[i].Quantity
	}
	if !same {
		return nil, status.Error(codes.FailedPrecondition, "idempotency key already used for a different order")
	}
	return &ordersv1.CreateOrderResponse{Order: toProto(o)}, nil
}
