// Package validatetest runs a service's handlers behind the buf.validate
// rules of their requests, as a server's validation interceptor
// (kafkatransport/validate) runs them, for the services' own tests, which
// call handlers directly.
package validatetest

import (
	"context"
	"sync"

	"buf.build/go/protovalidate"

	"github.com/kgrpc/platform/kafkatransport/validate"
)

// Rules returns the validator the tests share, made on first use.
var Rules = sync.OnceValue(func() protovalidate.Validator {
	v, err := protovalidate.New()
	if err != nil {
		panic("validatetest: " + err.Error())
	}
	return v
})

// Wrap returns handler h behind the rules (validate.Wrap with Rules).
func Wrap[Req, Resp any](h func(context.Context, Req) (Resp, error)) func(context.Context, Req) (Resp, error) {
	return validate.Wrap(Rules(), h)
}
