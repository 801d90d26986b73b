package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
)

// publishTimeout bounds how long one publish waits for the broker; the
// relay then retries.
const publishTimeout = 10 * time.Second

// PublishTo returns the PublishFunc of a relay whose events go to Kafka
// through pub: each event is published on the topic and with the record
// key that its message's (kgrpc.kafka.v1.event) option names (see
// kafkatransport.PublishEvent), exactly as its generated <Event>Publisher
// would, waiting at most 10s for the broker's acknowledgement. So an event
// needs no registration: declaring it in its proto and adding it in its
// service is enough. A message type without the option fails with
// ErrUnknownEvent.
//
// Each event's ev-id is "<source>-outbox-<row id>": the same when a relay
// that crashed before deleting the event publishes it again, so that
// subscribers can deduplicate on it. source names the outbox (the unit
// that owns the database: "users"); row ids are unique within it.
func PublishTo(pub *kafkatransport.Publisher, source string) PublishFunc {
	return func(ctx context.Context, ev proto.Message) error {
		ctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		if id, ok := ctx.Value(entryIDKey{}).(int64); ok {
			ctx = kafkatransport.WithEventID(ctx, source+"-outbox-"+strconv.FormatInt(id, 10))
		}
		err := kafkatransport.PublishEvent(ctx, pub, ev)
		if errors.Is(err, kafkatransport.ErrNotEvent) {
			return fmt.Errorf("%w: %w", ErrUnknownEvent, err) // err names the type
		}
		return err
	}
}
