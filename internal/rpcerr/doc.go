// Package rpcerr turns a service's unexpected failures (storage, token
// signing, calls to other services) into the status a caller sees: the
// failure is logged, and the caller learns no more than that it happened,
// or that its own context ended.
package rpcerr
