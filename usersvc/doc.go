// Package usersvc is the users domain of the shop: accounts, sign-in and
// roles. Service implements usersv1.UserServiceServer on top of a Repository;
// SQLRepository is the store (SQLite or PostgreSQL, chosen by the DSN given
// to Open).
//
// # Decisions callers rely on
//
//   - User ids are "u_" followed by 16 lower-case hex digits (64 random bits
//     from crypto/rand), for example "u_3f9a0c1d2e4b5a69".
//   - Emails must be a bare address (the email rule of protovalidate: no
//     display name, no spaces around it, at most 254 bytes). Uniqueness is case-insensitive: the store
//     keeps the address as given and a lower-cased copy under a UNIQUE
//     constraint. Login matches the lower-cased address.
//   - Passwords are 8 to 72 bytes long (at least 8 characters) and stored only
//     as bcrypt hashes. Login compares in constant time and answers
//     Unauthenticated with one message for an unknown email and for a wrong
//     password; an unknown email still costs one bcrypt comparison.
//   - GetUser and UpdateUser let a caller reach their own account (or "me")
//     and admins reach any account. Anyone else gets PermissionDenied, whether
//     or not the id exists, so ids cannot be probed; an admin asking for an
//     unknown id gets NotFound. Service-role tokens are not admins.
//   - ListUsers is for admins (anyone else is PermissionDenied before the
//     request's rules are checked: auth.InterceptorConfig.Admin). It returns users oldest first, ordered by
//     (create_time, id). page_size defaults to 20 and is capped at 100.
//     page_token is opaque: unpadded base64url of "<create_time unix
//     microseconds>:<id>" of the last user of the previous page.
//   - CreateUser writes the user and a shop.users.v1.UserCreated event to the
//     outbox in one transaction, then calls Config.Notify.
//   - EnsureAdmin creates an admin account or promotes an existing one; it
//     never changes the password or display name of an existing account, but
//     checks every input as CreateUser would (an empty display name means
//     DefaultAdminDisplayName).
//   - The limits of every request field are its buf.validate rules in
//     proto/shop/users/v1/users.proto (email an address of at most 254
//     bytes, password 8 characters to 72 bytes, display name 1 to 100
//     characters, not only spaces, no control characters; user ids 1 to 128
//     bytes of printable ASCII), enforced
//     before a handler runs: InvalidArgument listing every violation.
//     Login answers InvalidArgument to an empty email or password.
//   - Storage failures are logged and answered with Internal and a generic
//     message.
package usersvc
