package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/kgrpc/platform/gen/shop/api/v1"
)

// /openapi.json describes the API the gateway serves: the same routes as
// proto/http.yaml maps (the dashboard included), each answering; bearer
// security on exactly the routes that refuse an anonymous caller; the
// Idempotency-Key header on the writes; and error and dashboard bodies
// as the document's schemas say.
func TestOpenAPIDescribesTheAPI(t *testing.T) {
	s := startShop(t, t.TempDir())
	code, raw, _ := s.call("GET", "/openapi.json", "", nil, nil)
	if code != 200 {
		t.Fatalf("GET /openapi.json = %d", code)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Security   []map[string][]string `json:"security"`
			Parameters []struct {
				Name, In string
			} `json:"parameters"`
			Responses map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				} `json:"schema"`
			} `json:"responses"`
		} `json:"paths"`
		Definitions map[string]struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}

	// The routes of proto/http.yaml, each "METHOD /path" with grpc-gateway's
	// {param} names, are the document's.
	yml, err := os.ReadFile(filepath.Join("..", "..", "proto", "http.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// (Path parameters compare as {}: the document names them in JSON's
	// lowerCamelCase.)
	param := regexp.MustCompile(`\{[^}]+\}`)
	var mapped []string
	for _, m := range regexp.MustCompile(`(?m)^\s+(get|post|patch|delete|put): (\S+)$`).FindAllStringSubmatch(string(yml), -1) {
		mapped = append(mapped, strings.ToUpper(m[1])+" "+param.ReplaceAllString(m[2], "{}"))
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+param.ReplaceAllString(path, "{}"))
		}
	}
	slices.Sort(mapped)
	slices.Sort(documented)
	if !slices.Equal(mapped, documented) || !slices.Contains(documented, "GET /v1/users/{}/dashboard") {
		t.Fatalf("routes of http.yaml:\n%v\ndocumented:\n%v", mapped, documented)
	}

	// Every documented route answers, and refuses an anonymous caller when
	// and only when the document says it needs a bearer token.
	for path, ops := range doc.Paths {
		for method, op := range ops {
			method = strings.ToUpper(method)
			url := param.ReplaceAllString(path, "x")
			var body any
			if method == "POST" || method == "PATCH" {
				body = map[string]any{}
			}
			code, raw, _ := s.call(method, url, "", nil, body)
			if strings.HasSuffix(path, ":watch") || strings.HasSuffix(path, ":import") {
				code, raw = streamStatus(code, raw)
			}
			var e struct{ Code, Message string }
			_ = json.Unmarshal(raw, &e)
			if strings.HasPrefix(e.Message, "no route for") {
				t.Errorf("%s %s is documented but not served", method, path)
				continue
			}
			secured := len(op.Security) > 0
			if secured != (code == http.StatusUnauthorized) {
				t.Errorf("%s %s: documented security %v, anonymous answer %d %s", method, path, op.Security, code, raw)
			}
			if ref := op.Responses["default"].Schema.Ref; ref != "#/definitions/Error" {
				t.Errorf("%s %s: default response %q, want the Error schema", method, path, ref)
			}
			writes := method != "GET" && !strings.HasSuffix(path, ":import")
			hasKey := slices.ContainsFunc(op.Parameters, func(p struct{ Name, In string }) bool {
				return p.Name == "Idempotency-Key" && p.In == "header"
			})
			if hasKey != writes {
				t.Errorf("%s %s: Idempotency-Key documented %v", method, path, hasKey)
			}
		}
	}

	// The docs page is served, its asset directories are not listed.
	if code, raw, _ := s.call("GET", "/docs", "", nil, nil); code != 200 || !strings.Contains(string(raw), "swagger-ui-bundle.js") {
		t.Errorf("GET /docs = %d %.100s", code, raw)
	}
	if code, raw, _ := s.call("GET", "/docs/swagger-ui/", "", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET /docs/swagger-ui/ = %d %.200s, want 404: no directory listing", code, raw)
	}

	// An error body is the Error schema: code a string, message, details.
	errDef := doc.Definitions["Error"].Properties
	if errDef["code"].Type != "string" || errDef["message"].Type != "string" || errDef["details"].Type != "array" {
		t.Fatalf("Error schema = %+v", errDef)
	}
	_, raw, _ = s.call("GET", "/v1/products/p_nope", "", nil, nil)
	var apiErr apiv1.Error
	if err := protojson.Unmarshal(raw, &apiErr); err != nil || apiErr.GetCode() != "NOT_FOUND" {
		t.Fatalf("error body %s is not an Error: %v", raw, err)
	}
	// The dashboard is the GetUserDashboardResponse schema.
	_, tok := s.register("openapi@example.com")
	_, raw, _ = s.call("GET", "/v1/users/me/dashboard", tok, nil, nil)
	var dash apiv1.GetUserDashboardResponse
	if err := protojson.Unmarshal(raw, &dash); err != nil || dash.GetUser().GetEmail() != "openapi@example.com" {
		t.Fatalf("dashboard body %s is not a GetUserDashboardResponse: %v", raw, err)
	}
}

// streamStatus returns the status of a streaming route's answer: an error
// that came as the stream's first line, {"error": {...}}, counts with the
// HTTP status of its code.
func streamStatus(code int, raw []byte) (int, []byte) {
	var l struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &l) != nil || l.Error == nil {
		return code, raw
	}
	if l.Error.Code == 16 { // UNAUTHENTICATED
		return http.StatusUnauthorized, raw
	}
	return code, raw
}
