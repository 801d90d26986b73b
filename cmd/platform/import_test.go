package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An admin imports products as NDJSON: new SKUs are created, a known one
// updated (its stock set), and an invalid line rejected with its position
// and reason while the others go in. A customer may not import.
func TestImportProductsOverREST(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	_, customer := s.register("importer@example.com")
	body := strings.Join([]string{
		`{"sku": "IMP-1", "name": "First", "category": "tools", "priceCents": 500, "stock": 3}`,
		`{"sku": "IMP-2", "name": "Second", "priceCents": -1}`,
		`{"sku": "IMP-3", "name": "Third", "priceCents": 700, "stock": 5}`,
	}, "\n") + "\n"
	code, raw, _ := s.call("POST", "/v1/products:import", admin, nil, body)
	var out struct {
		Created, Updated, Rejected int
		Rejections                 []struct {
			Position int
			Sku      string
			Reason   string
		}
	}
	if err := json.Unmarshal(raw, &out); err != nil || code != http.StatusOK {
		t.Fatalf("import = %d %s (%v)", code, raw, err)
	}
	if out.Created != 2 || out.Updated != 0 || out.Rejected != 1 || len(out.Rejections) != 1 ||
		out.Rejections[0].Position != 2 || out.Rejections[0].Sku != "IMP-2" || !strings.Contains(out.Rejections[0].Reason, "price") {
		t.Fatalf("import = %s, want 2 created and line 2 rejected for its price", raw)
	}
	list := s.must(200, "GET", "/v1/products?query=first", "", nil)["products"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["sku"] != "IMP-1" || num(t, list[0].(map[string]any)["stock"]) != 3 {
		t.Fatalf("products after import = %v", list)
	}
	id := list[0].(map[string]any)["id"].(string)

	// Again, with a new price and stock for IMP-1: updated, not created.
	code, raw, _ = s.call("POST", "/v1/products:import", admin, nil, `{"sku": "imp-1", "name": "First v2", "priceCents": 550, "stock": 8}`+"\n")
	if err := json.Unmarshal(raw, &out); err != nil || code != 200 || out.Created != 0 || out.Updated != 1 || out.Rejected != 0 {
		t.Fatalf("second import = %d %s", code, raw)
	}
	p := s.must(200, "GET", "/v1/products/"+id, "", nil)
	if p["name"] != "First v2" || num(t, p["priceCents"]) != 550 || s.stock(id) != 8 {
		t.Fatalf("product after the update = %v", p)
	}

	if code, raw, _ := s.call("POST", "/v1/products:import", customer, nil, `{"sku": "X-1", "name": "x", "priceCents": 1}`+"\n"); code != http.StatusForbidden {
		t.Fatalf("a customer's import = %d %s, want 403", code, raw)
	}
}

// An import with a line that does not decode answers 400 naming the line
// and changes nothing: every line is decoded before any is sent, so the
// valid lines before the bad one are not applied either. (They were, at
// random, when each line went to the service as soon as it decoded.)
func TestImportWithUndecodableLineChangesNothing(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	const reps = 8
	for i := range reps {
		body := fmt.Sprintf(`{"sku": "UF-%d", "name": "n", "priceCents": 1}`+"\n"+`{"sku": "x", "nme": "y"}`+"\n", i)
		code, raw, _ := s.call("POST", "/v1/products:import", admin, nil, body)
		var out struct {
			Code, Message string
			Details       []struct {
				Type            string `json:"@type"`
				FieldViolations []struct{ Field, Description string }
			}
		}
		if err := json.Unmarshal(raw, &out); err != nil || code != http.StatusBadRequest || out.Code != "INVALID_ARGUMENT" ||
			out.Message != `line 2: unknown field "nme"` || len(out.Details) != 1 ||
			out.Details[0].Type != "type.googleapis.com/google.rpc.BadRequest" || len(out.Details[0].FieldViolations) != 1 ||
			out.Details[0].FieldViolations[0].Field != "line 2" || out.Details[0].FieldViolations[0].Description != `unknown field "nme"` {
			t.Fatalf("import with a bad line 2 = %d %s (%v), want 400 naming line 2", code, raw, err)
		}
	}
	// A later import goes through: once it is in, the bad ones would have
	// been too, had they sent anything.
	s.must(200, "POST", "/v1/products:import", admin, `{"sku": "UF-OK", "name": "ok", "priceCents": 1}`+"\n")
	eventually(t, "UF-OK listed", func() bool {
		return len(s.must(200, "GET", "/v1/products?query=ok", "", nil)["products"].([]any)) == 1
	})
	time.Sleep(500 * time.Millisecond)
	for _, p := range s.must(200, "GET", "/v1/products?pageSize=100", "", nil)["products"].([]any) {
		if sku := p.(map[string]any)["sku"].(string); strings.HasPrefix(sku, "UF-") && sku != "UF-OK" {
			t.Errorf("product %s of a refused import exists", sku)
		}
	}
}
