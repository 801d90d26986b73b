// Package ordersvc is the orders domain of the shop: placing, tracking and
// cancelling orders. Service implements ordersv1.OrderServiceServer on top of
// a Repository; SQLRepository is the store (SQLite or PostgreSQL, chosen by
// the DSN given to Open). Stock is held by the product service, which Service
// calls through Config.Products, a productsv1.ProductServiceClient. Service
// mints no tokens: the composition root (internal/app) builds that client
// with NewProductsClient, whose connection is wrapped with
// auth.WithServiceToken and so presents the order service's own token
// (subject "ordersvc", role service, valid ten minutes, cached and renewed
// two minutes before it expires).
//
// The code is split by concern: service.go (Service, Config, the simple
// RPCs), create.go (the CreateOrder saga, whose doc comment names every
// place stock is given back), stock.go (the product service calls),
// recovery.go (the recovery sweep), idempotency.go, errors.go and
// convert.go (messages and statuses).
//
// # Decisions callers rely on
//
//   - Order ids are "o_" followed by 16 lower-case hex digits (64 random bits
//     from crypto/rand). The order id is also the stock reservation id.
//   - CreateOrder is for signed-in customers and admins, always for
//     themselves; service tokens get PermissionDenied. An order has 1 to 50
//     distinct products; each line needs a product_id (at most 128 bytes) and
//     a quantity of 1 to 1000. Lines of the same product are merged into the
//     first one (request order is kept) and the merged quantity must also be
//     at most 1000.
//   - CreateOrder first records a pending reservation (the order id, due
//     for recovery Config.RecoverAfter later, default 30s), then reserves
//     stock (ProductService.ReserveStock, bounded by Config.CallTimeout),
//     then stores the order PENDING with names and prices captured from the
//     reservation and a shop.orders.v1.OrderCreated event in the outbox,
//     deleting the pending reservation in the same transaction. The order's
//     create time is when its attempt began. FailedPrecondition (short
//     stock), NotFound (unknown product) and InvalidArgument from the
//     product service reach the caller unchanged, message and details
//     included. Other reservation failures answer Unavailable (or the
//     caller's own DeadlineExceeded/Canceled); since the reservation may
//     have happened, Service then calls ReleaseStock at once, best effort,
//     unless the call has an idempotency key: then the stock stays
//     reserved under the order id until a retry of the key finds the
//     reservation and stores the order, or the recovery sweep releases it
//     after RecoverAfter.
//     When storing fails after a reservation, Service calls ReleaseStock
//     (best effort) and answers Internal. Both are the saga's one
//     compensation path (a deferred release in CreateOrder).
//   - A reservation refused for its id (shop.products.v1.ReservationRefusal:
//     a "RESERVATION" violation, "released" or "other items") answers
//     FailedPrecondition "idempotency key already used for a different
//     order" for other items; for a released id, FailedPrecondition asking
//     for a new idempotency key when the call had one, Aborted otherwise.
//   - Nothing is lost when an instance dies or a release fails: every
//     instance runs RecoverReservations, which every Config.RecoverEvery
//     (default RecoverAfter/6) claims the pending reservations that are due
//     and have no order, releases their stock (again, which is harmless)
//     and forgets them; one whose order exists is only forgotten. Claims are
//     conditional writes, so each is handled by one instance; a release that
//     fails is retried after a lease of twice the call timeout. RecoverAfter
//     must exceed the call timeout (plus clock skew between hosts): a
//     reservation request can reach the product service until its deadline,
//     and the product service refuses a reservation of a released id, so a
//     late one cannot leak stock either.
//   - An attempt whose pending reservation the sweep has taken cannot store
//     its order (Aborted, "rolled back"); a retry of its idempotency key
//     during the rollback is Unavailable, and after it FailedPrecondition
//     asking for a new idempotency key (the key names the order id, whose
//     reservation was released for good).
//   - Like every method with side effects, CreateOrder, CancelOrder and
//     UpdateOrderStatus run once per idempotency key or redelivered request
//     (kafkatransport/idempotency, installed by internal/app): the answer
//     is recorded in the transaction that stores the order or its new
//     status. CreateOrder's pending reservation is written outside that
//     transaction (sqlstore.Detach), so that the sweep finds it when the
//     attempt dies after reserving.
//   - GetOrder and CancelOrder reach the caller's own orders, or any order
//     for admins. Someone else's order is NotFound, exactly like an unknown
//     one, so order ids cannot be probed.
//   - ListUserOrders lists the caller's orders (user_id "me" or their id), or
//     anyone's for admins; others get PermissionDenied. Orders come newest
//     first, ordered by (create_time desc, id desc). page_size defaults to 20
//     and is capped at 100; negative is InvalidArgument (the request's
//     buf.validate rules, like every field limit here). page_token is
//     opaque: unpadded base64url of "<create_time unix microseconds>:<id>" of
//     the last order of the previous page; a malformed one is
//     InvalidArgument. total_size counts all the user's orders.
//   - Status changes follow PENDING -> CONFIRMED -> SHIPPED -> DELIVERED, and
//     PENDING or CONFIRMED -> CANCELLED. Anything else, including a change to
//     the current status (so cancelling twice), is FailedPrecondition;
//     UNSPECIFIED or unknown enum values are InvalidArgument.
//     UpdateOrderStatus is for admins (anyone else is PermissionDenied before
//     the request's rules are checked: auth.InterceptorConfig.Admin);
//     CancelOrder for the owner and admins.
//   - Every status change is a conditional update (WHERE status = the status
//     read) written with a shop.orders.v1.OrderStatusChanged event (items
//     included) in one transaction, so concurrent changes cannot both win and
//     each change yields exactly one event. A change that loses a race is
//     re-read and re-checked, up to three times, then answered Aborted.
//   - CancelOrder does not call ReleaseStock: the product service releases
//     the reservation when it consumes the OrderStatusChanged event to
//     CANCELLED (at-least-once delivery, released exactly once there).
//   - After committing events Service calls Config.Notify.
//   - Storage failures are logged and answered with Internal and a generic
//     message.
package ordersvc
