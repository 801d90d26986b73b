package gateway

import (
	"embed"
	"io/fs"
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

// docsFS holds the API reference page: index.html and init.js, ours, and
// Swagger UI's files, vendored (docs/swagger-ui/README.md).
//
//go:embed docs
var docsFS embed.FS

// serveDocs serves GET /docs, the API reference rendered from
// /openapi.json, and its assets under /docs/; nothing comes from another
// host.
func serveDocs() (page, assets http.Handler) {
	sub, err := fs.Sub(docsFS, "docs")
	if err != nil {
		panic(err) // the embedded tree has docs/
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	page = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	})
	files := http.StripPrefix("/docs/", http.FileServerFS(filesOnly{sub}))
	assets = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/docs/" || r.URL.Path == "/docs/index.html" {
			http.Redirect(w, r, "/docs", http.StatusMovedPermanently)
			return
		}
		files.ServeHTTP(&cacheOnOK{ResponseWriter: w}, r)
	})
	return page, assets
}

// filesOnly is an fs.FS whose directories do not open, so that the file
// server lists none: only the files themselves are served.
type filesOnly struct{ fs.FS }

// Open implements fs.FS.
func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := file.Stat(); err != nil || st.IsDir() {
		_ = file.Close()
		return nil, fs.ErrNotExist
	}
	return file, nil
}

// cacheOnOK lets caches keep an asset for an hour, when it was found.
type cacheOnOK struct {
	http.ResponseWriter
}

// WriteHeader implements http.ResponseWriter.
func (c *cacheOnOK) WriteHeader(code int) {
	if code == http.StatusOK {
		c.Header().Set("Cache-Control", "public, max-age=3600")
	}
	c.ResponseWriter.WriteHeader(code)
}
