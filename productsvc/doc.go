// Package productsvc is the products domain of the shop: the catalogue and
// its stock, including the stock reservations orders make. Service implements
// productsv1.ProductServiceServer on top of a Repository; SQLRepository is
// the store (SQLite or PostgreSQL, chosen by the DSN given to Open).
//
// # Decisions callers rely on
//
//   - Product ids are "p_" followed by 16 lower-case hex digits (64 random
//     bits from crypto/rand).
//   - CreateProduct, UpdateProduct, DeleteProduct, AdjustStock and
//     ImportProducts are for admins (Unauthenticated without a token,
//     PermissionDenied "admin role required" otherwise). internal/app's
//     auth interceptor checks the role before the request's rules
//     (auth.InterceptorConfig.Admin), so a customer's invalid request is
//     PermissionDenied, not InvalidArgument; the handlers check it again
//     (auth.RequireAdmin) for a server run without that interceptor.
//     ReserveStock and ReleaseStock are for the service and admin roles.
//     GetProduct and ListProducts need no token.
//   - The limits of every request field are its buf.validate rules in
//     proto/shop/products/v1/products.proto, which the server's validation
//     interceptor (kafkatransport/validate) enforces before a handler runs:
//     a SKU is 1 to 64 ASCII letters, digits, '-', '_' or '.', starting with
//     a letter or digit; names 1 to 200 characters, not only spaces;
//     descriptions at most 5000, categories at most 100; prices 0 to 10^10
//     cents, stock 0 to 10^9; no control characters in text (descriptions
//     may hold newlines and tabs). A request that breaks any is
//     InvalidArgument listing every violation (google.rpc.BadRequest).
//     ImportProducts checks each item with the same rules and rejects the
//     bad ones. Names, descriptions and categories are stored trimmed; a
//     SKU is stored as given and unique among live products ignoring case
//     (AlreadyExists).
//   - UpdateProduct changes the optional fields that are set; none set is
//     InvalidArgument. Setting category to "" clears it.
//   - DeleteProduct is a soft delete: the product is NotFound everywhere
//     afterwards and its SKU can be reused, but reservations keep pointing at
//     it and releasing them still returns the stock to it (without events).
//   - AdjustStock needs a non-zero delta; a result below zero (or above 10^9)
//     is FailedPrecondition and changes nothing.
//   - ListProducts: query is a case-insensitive literal substring of name or
//     description ('%' and '_' are not wildcards); category matches ignoring
//     case; min/max price are inclusive, negative or min > max is
//     InvalidArgument; in_stock keeps stock > 0. order_by is "name" (the
//     default, sorted ignoring case), "price" or "create_time", with "-" for
//     descending; anything else is InvalidArgument. The product id breaks
//     ties in the same direction. page_size defaults to 20, is capped at 100,
//     negative is InvalidArgument.
//   - Paging is keyset paging, so inserts and deletes between pages neither
//     skip nor repeat products. page_token is opaque: unpadded base64url of a
//     JSON object holding a hash of the filters and order, the sort key and
//     the id of the last product. A malformed token, or a token used with
//     other filters or order, is InvalidArgument; page_size may change.
//   - ReserveStock: 1 to 100 distinct products, quantity >= 1; lines of the
//     same product are merged into the first one. Everything happens in one
//     transaction with conditional updates (stock >= quantity), so stock
//     never goes negative: an unknown or deleted product is NotFound, a short
//     one FailedPrecondition naming the product (with a PreconditionFailure
//     detail of type "STOCK", subject the product id), and nothing is
//     reserved. Items come back in request order with the name and price the
//     product had at reservation time.
//   - ReserveStock is idempotent by reservation_id: repeating it with the
//     same items returns the stored result and reserves nothing. The same id
//     with other items, and any reservation of a released id, is
//     FailedPrecondition with a PreconditionFailure violation of type
//     "RESERVATION" (subject the reservation id, description "other items"
//     or "released"), as shop.products.v1.ReservationRefusal defines it in
//     proto/shop/products/v1/errors.proto: a released id never holds stock
//     again.
//   - ReleaseStock returns released=true exactly once per reservation;
//     repeats and unknown ids answer released=false. An unknown id is
//     remembered as released, so a reservation that arrives after its own
//     release (a retried call overtaking a slow one) is refused instead of
//     leaking stock.
//   - HandleOrderStatusChanged releases the reservation named by the order id
//     when the new status is ORDER_STATUS_CANCELLED and ignores the others;
//     it is safe under redelivery.
//   - Events go to the outbox in the write's transaction: ProductChanged for
//     create, update, delete (deleted=true, product as it was) and
//     AdjustStock; StockChanged for AdjustStock, for a create with initial
//     stock, and per item of a reservation or release (reservation_id set).
//     Config.Notify is called after such commits.
//   - SeedDemoCatalog loads ten demo products in three categories when the
//     store has never held a product.
//   - Storage failures are logged and answered with Internal and a generic
//     message (Canceled or DeadlineExceeded when the caller's context ended).
package productsvc
