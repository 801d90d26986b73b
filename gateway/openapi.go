package gateway

import _ "embed"

// OpenAPI is the shop's OpenAPI v2 document, generated from the protos by
// protoc-gen-openapiv2 (make generate) and served at /openapi.json.
//
//go:embed openapiv2/shop.swagger.json
var OpenAPI []byte
