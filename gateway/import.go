package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
)

// importPath is the route of ProductService.ImportProducts.
const importPath = "/v1/products:import"

// MaxImportLines is the most lines an import's body may have: productsvc's
// MaxImportItems (TestImportLimitsAgree holds them equal). A longer import
// is refused before anything is decoded or sent, so that the service,
// which fails the stream at its limit, never applies part of it.
const MaxImportLines = 10_000

// importProducts serves POST /v1/products:import in place of the handler
// grpc-gateway generates, which sends each line as soon as it decodes it:
// a line that did not decode then answered 400 with no position after the
// lines before it may already have been applied. Here the whole body
// (bounded by limitBody) is read and every line decoded first; a line that
// does not decode answers 400 naming it ("line 2: unknown field \"nme\"",
// with a google.rpc.BadRequest field violation "line 2"), and nothing is
// sent. The body is newline-delimited JSON, one ImportProductsRequest per
// line, so that a rejection's position is its line; white space ends lines
// and a body, but an empty line between two items is an error.
func (g *gateway) importProducts(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	inbound, outbound := runtime.MarshalerForRequest(g.mux, r)
	ctx, err := runtime.AnnotateContext(ctx, g.mux, r, productsv1.ProductService_ImportProducts_FullMethodName, runtime.WithHTTPPathPattern(importPath))
	if err != nil {
		runtime.HTTPError(r.Context(), g.mux, outbound, w, r, err)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// Too large (413) or too slow (408): see decodeError.
		runtime.HTTPError(ctx, g.mux, outbound, w, r, status.Error(codes.InvalidArgument, err.Error()))
		return
	}
	items, err := decodeImport(body, inbound)
	if err != nil {
		runtime.HTTPError(ctx, g.mux, outbound, w, r, err)
		return
	}
	resp, md, err := sendImport(ctx, g.cfg.Products, items)
	ctx = runtime.NewServerMetadataContext(ctx, md)
	if err != nil {
		runtime.HTTPError(ctx, g.mux, outbound, w, r, err)
		return
	}
	runtime.ForwardResponseMessage(ctx, g.mux, outbound, w, r, resp, g.mux.GetForwardResponseOptions()...)
}

// decodeImport decodes every line of an import's body, or returns the
// InvalidArgument error of the first that does not decode.
func decodeImport(body []byte, m runtime.Marshaler) ([]*productsv1.ImportProductsRequest, error) {
	lines := bytes.Split(bytes.TrimRight(body, " \t\r\n"), []byte("\n"))
	if len(lines) == 1 && len(bytes.TrimSpace(lines[0])) == 0 {
		return nil, nil // an empty import
	}
	if len(lines) > MaxImportLines {
		st, _ := status.New(codes.InvalidArgument, fmt.Sprintf("an import carries at most %d products, one per line; this one has %d lines", MaxImportLines, len(lines))).WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fmt.Sprintf("line %d", MaxImportLines+1), Description: fmt.Sprintf("beyond the %d lines an import may have", MaxImportLines)}},
		})
		return nil, st.Err()
	}
	items := make([]*productsv1.ImportProductsRequest, 0, len(lines))
	for i, line := range lines {
		item := new(productsv1.ImportProductsRequest)
		var problem string
		if len(bytes.TrimSpace(line)) == 0 {
			problem = "empty line: send one JSON object per line"
		} else if err := m.NewDecoder(bytes.NewReader(line)).Decode(item); err != nil {
			problem = lineProblem(err)
		}
		if problem != "" {
			field := fmt.Sprintf("line %d", i+1)
			st, _ := status.New(codes.InvalidArgument, field+": "+problem).WithDetails(&errdetails.BadRequest{
				FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: problem}},
			})
			return nil, st.Err()
		}
		items = append(items, item)
	}
	return items, nil
}

// lineProblem words the error of decoding one line of an import as
// decodeError words a body's.
func lineProblem(err error) string {
	switch {
	case errors.Is(err, errTrailingData):
		return "unexpected data after the JSON object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the line ends too early"
	}
	_, text, ok := decodeError(err.Error(), 0, nil)
	switch {
	case !ok:
		return err.Error()
	case strings.HasPrefix(text, "malformed JSON: "):
		return "malformed JSON: the line ends too early"
	case strings.HasPrefix(text, "malformed JSON"):
		return "malformed JSON"
	}
	return strings.TrimPrefix(text, "request body: ")
}

// sendImport streams items to the service and returns its answer and the
// call's header and trailer metadata, as grpc-gateway's handler does.
func sendImport(ctx context.Context, c productsv1.ProductServiceClient, items []*productsv1.ImportProductsRequest) (*productsv1.ImportProductsResponse, runtime.ServerMetadata, error) {
	var md runtime.ServerMetadata
	stream, err := c.ImportProducts(ctx)
	if err != nil {
		return nil, md, err
	}
	for _, item := range items {
		if err := stream.Send(item); err != nil {
			if errors.Is(err, io.EOF) {
				break // the service ended the stream: CloseAndRecv says why
			}
			return nil, md, err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, md, err
	}
	if md.HeaderMD, err = stream.Header(); err != nil {
		return nil, md, err
	}
	resp, err := stream.CloseAndRecv()
	md.TrailerMD = stream.Trailer()
	return resp, md, err
}
