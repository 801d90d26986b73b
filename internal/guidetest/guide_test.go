package guidetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository's root, from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// block is a fenced code block of the guide: a command block (lang "sh"),
// run when its tag is empty or "kafka" (with KAFKA_BROKERS set), or a file
// the reader writes (file=PATH).
type block struct {
	lang, tag, file, body string
}

var fence = regexp.MustCompile("^```(\\w*)(?:\\s+(.*))?$")

// parseGuide returns the fenced blocks of the guide, in order.
func parseGuide(t *testing.T, text string) []block {
	t.Helper()
	var (
		blocks []block
		cur    *block
		body   strings.Builder
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if cur == nil {
			m := fence.FindStringSubmatch(line)
			if m == nil || m[1] == "" {
				continue
			}
			cur = &block{lang: m[1]}
			for _, attr := range strings.Fields(m[2]) {
				if f, ok := strings.CutPrefix(attr, "file="); ok {
					cur.file = f
				} else {
					cur.tag = attr
				}
			}
			body.Reset()
			continue
		}
		if line == "```" {
			cur.body = body.String()
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		body.WriteString(line + "\n")
	}
	if cur != nil {
		t.Fatalf("guide: unterminated %s block", cur.lang)
	}
	return blocks
}

// script turns the guide's blocks into one bash script: files are written
// with heredocs, command blocks run as they are, with kafka ones only when
// withKafka.
func script(blocks []block, withKafka bool) (string, []string) {
	var sb strings.Builder
	sb.WriteString("set -euxo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	var files []string
	for _, b := range blocks {
		switch {
		case b.file != "":
			files = append(files, b.file)
			fmt.Fprintf(&sb, "mkdir -p %q\ncat > %q <<'GUIDE_EOF'\n%sGUIDE_EOF\n", filepath.Dir(b.file), b.file, b.body)
		case b.lang == "sh" && (b.tag == "" || (b.tag == "kafka" && withKafka)):
			fmt.Fprintf(&sb, "echo '+ guide block'\n%s", b.body)
		}
	}
	return sb.String(), files
}

// TestGuide follows docs/guide.md from an empty directory: it writes the
// files the guide shows, runs its commands (the real-Kafka step when
// KAFKA_BROKERS names a cluster), checks what the client printed, and
// compares the files with examples/greeter.
func TestGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the guide builds a module from scratch")
	}
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, "docs", "guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseGuide(t, string(text))
	kafka := os.Getenv("KAFKA_BROKERS") != ""
	sh, files := script(blocks, kafka)
	if len(files) == 0 || !strings.Contains(sh, "go test ./...") {
		t.Fatalf("the guide has %d files and no go test: parsed wrong?", len(files))
	}

	if p := os.Getenv("GUIDE_SCRIPT"); p != "" { // for debugging the guide by hand
		if err := os.WriteFile(p, []byte(sh), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", sh)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KGRPC="+root, "GOFLAGS=", "GOWORK=off")
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("the guide ran in %v; its output:\n%s", time.Since(start).Round(time.Second), out.String())
	if err != nil {
		t.Fatalf("the guide failed: %v", err)
	}
	if !strings.Contains(out.String(), "Hello, Ada!") {
		t.Error("the client on the embedded broker did not print Hello, Ada!")
	}
	if kafka {
		if !strings.Contains(out.String(), "Hello, Grace!") {
			t.Error("the client on real Kafka did not print Hello, Grace!")
		}
	} else {
		t.Log("KAFKA_BROKERS is not set: the guide's real-Kafka step did not run here (the real-Kafka pass runs it)")
	}

	// What the reader wrote is examples/greeter.
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, "greeter", f))
		if err != nil {
			t.Errorf("the guide did not write %s: %v", f, err)
			continue
		}
		want, err := os.ReadFile(filepath.Join(root, "examples", "greeter", f))
		if err != nil {
			t.Errorf("examples/greeter has no %s: %v", f, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the guide's %s differs from examples/greeter/%s", f, f)
		}
	}
	for _, gen := range []string{"greeter.pb.go", "greeter_grpc.pb.go", "greeter_kafka.pb.go"} {
		got, err := os.ReadFile(filepath.Join(dir, "greeter", "gen", "greeter", "v1", gen))
		if err != nil {
			t.Errorf("the guide generated no %s: %v", gen, err)
			continue
		}
		want, _ := os.ReadFile(filepath.Join(root, "examples", "greeter", "gen", "greeter", "v1", gen))
		if !bytes.Equal(got, want) {
			t.Errorf("the guide's generated %s differs from examples/greeter's", gen)
		}
	}
}

// TestGreeterModuleGraph checks what a module using the transport gets with
// it: no package of a database driver or of grpc-gateway is built into
// examples/greeter, and no module of them is required by the transport's
// module. (confluent-kafka-go's own go.mod requires grpc-gateway for its
// schema-registry packages, which the transport does not import: that one
// edge of the module graph is confluent-kafka-go's, and no code of it is
// built.)
func TestGreeterModuleGraph(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "examples", "greeter")
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	shop := regexp.MustCompile(`jackc/pgx|sqlite|grpc-gateway|github\.com/kgrpc/platform@`)
	graph := goCmd("mod", "graph")
	var edges int
	for line := range strings.Lines(graph) {
		edges++
		from, to, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !shop.MatchString(to) {
			continue
		}
		if strings.HasPrefix(from, "github.com/confluentinc/confluent-kafka-go/v2@") && strings.Contains(to, "grpc-gateway") {
			t.Logf("confluent-kafka-go's own requirement, none of whose packages is built: %s", strings.TrimSpace(line))
			continue
		}
		t.Errorf("module graph of examples/greeter: %s", strings.TrimSpace(line))
	}
	if edges < 10 {
		t.Fatalf("go mod graph printed %d edges: %q", edges, graph)
	}
	pkgs := goCmd("list", "-deps", "-test", "./...")
	for line := range strings.Lines(pkgs) {
		if shop.MatchString(line) {
			t.Errorf("examples/greeter builds %s", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(pkgs, "github.com/kgrpc/platform/kafkatransport\n") {
		t.Fatal("go list -deps did not list the transport: wrong directory?")
	}
}
