package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium returns the Chromium to drive: $CHROMIUM (scripts/test.sh sets
// it, installing Debian's chromium when it is missing), or chromium on the
// PATH. Without one the test fails in CI and skips elsewhere, and
// scripts/test.sh's summary says so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "chromium", "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium: CI installs Debian's chromium (scripts/chromium.sh)")
	}
	t.Skip("no Chromium: install Debian's chromium (scripts/chromium.sh, as root) or set CHROMIUM")
	return ""
}

// GET /docs renders the API reference in a real headless Chromium: every
// route of /openapi.json is listed, nothing is fetched from another host,
// and "Try it out" on GET /v1/products answers 200 with the catalog.
func TestDocsPage(t *testing.T) {
	exe := chromium(t)
	s := startShop(t, t.TempDir())
	_, raw, _ := s.call("GET", "/openapi.json", "", nil, nil)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var want []string
	for path, ops := range doc.Paths {
		for method := range ops {
			want = append(want, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(want)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		// This machine's network is closed: no background connections.
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	var mu sync.Mutex
	var foreign []string
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			if u := e.Request.URL; !strings.HasPrefix(u, s.base+"/") && !strings.HasPrefix(u, "data:") {
				mu.Lock()
				foreign = append(foreign, u)
				mu.Unlock()
			}
		}
	}); err != nil {
		t.Fatalf("start Chromium (%s): %v", exe, err)
	}
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("start Chromium (%s): %v", exe, err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(s.base+"/docs"), chromedp.WaitVisible(chromedp.CSS(".opblock"))); err != nil {
		t.Fatalf("render /docs: %v", err)
	}
	listed, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".opblock")).map(b =>
		b.querySelector(".opblock-summary-method").innerText.trim() + " " +
		b.querySelector(".opblock-summary-path").getAttribute("data-path"))`))
	if err != nil {
		t.Fatalf("read the routes /docs lists: %v", err)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Fatalf("/docs lists:\n%v\n/openapi.json has:\n%v", listed, want)
	}

	// Try it out: GET /v1/products, through the page.
	op := "#operations-ProductService-ProductService_ListProducts"
	err = chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(op+" .opblock-summary")),
		chromedp.WaitVisible(chromedp.CSS(op+" .try-out__btn")),
		chromedp.Click(chromedp.CSS(op+" .try-out__btn")),
		chromedp.WaitVisible(chromedp.CSS(op+" .execute")),
		chromedp.Click(chromedp.CSS(op+" .execute")),
		chromedp.WaitVisible(chromedp.CSS(op+" .live-responses-table tr.response .response-col_status")),
	)
	if err != nil {
		t.Fatalf("try GET /v1/products in /docs: %v", err)
	}
	status, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(op+" .live-responses-table tr.response .response-col_status")))
	if err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(op+" .live-responses-table .response-col_description pre")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(status) != "200" || !strings.Contains(body, `"products"`) {
		t.Fatalf("try GET /v1/products: status %q, body %.300q", status, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(foreign) > 0 {
		t.Fatalf("/docs fetched from other hosts: %v", foreign)
	}
	t.Logf("/docs listed %d routes; GET /v1/products tried from the page answered %s", len(listed), strings.TrimSpace(status))
}
