package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
