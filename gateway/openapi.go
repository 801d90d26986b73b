package gateway

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the shop's OpenAPI v2 document, generated from the protos by
// protoc-gen-openapiv2 (make generate) and served at /openapi.json.
//
//go:embed openapiv2/shop.swagger.json
var OpenAPI []byte

// serveOpenAPI serves doc, the document of Config.OpenAPI, as JSON.
func serveOpenAPI(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
}
