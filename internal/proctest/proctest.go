package proctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/app"
)

// AdminEmail and AdminPassword are the credentials the suites give usersvc
// for its first admin (--admin-email, --admin-password).
const (
	AdminEmail    = "admin@example.com"
	AdminPassword = "admin-pass-123"
)

// Proc is one running binary.
type Proc struct {
	// Name names the process in logs and failures.
	Name string
	// URL is the base URL of its HTTP listener: the API of a gateway, the
	// /healthz and /readyz of a service.
	URL string
	// Log is the process's output, stdout and stderr together.
	Log *Buffer
	// Exited is closed once the process has exited.
	Exited <-chan struct{}

	cmd  *exec.Cmd
	path string
	args []string
}

// Kill sends SIGKILL and waits until the process has exited.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.Exited
}

// Stop sends SIGTERM and waits until the process has exited, or kills it
// after timeout.
func (p *Proc) Stop(timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited:
	case <-time.After(timeout):
		p.Kill()
	}
}

// Cluster starts binaries of one build that share a broker, a topic prefix
// and a key directory (each unit's key and the keyring, made by
// app.EnsureKeys), and kills them when the test ends, showing their output
// if it failed.
type Cluster struct {
	// LogTail, when above zero, limits the output shown of each process
	// after a failure to its last LogTail lines.
	LogTail int
	// Env are "KEY=value" settings every process started from now on gets
	// besides the test's environment.
	Env []string

	t       testing.TB
	bin     string
	brokers string
	prefix  string
	keys    string // directory of the units' keys and the keyring

	mu    sync.Mutex
	procs []*Proc
}

// NewCluster returns a cluster of the binaries in bin (see Build) on the
// broker brokers, with topic prefix prefix and new keys for every unit.
func NewCluster(t testing.TB, bin, brokers, prefix string) *Cluster {
	keys := t.TempDir()
	if _, err := app.EnsureKeys(keys, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("unit keys: %v", err)
	}
	c := &Cluster{t: t, bin: bin, brokers: brokers, prefix: prefix, keys: keys}
	t.Cleanup(func() {
		c.mu.Lock()
		procs := c.procs
		c.mu.Unlock()
		for _, p := range procs {
			p.Kill()
		}
		if t.Failed() {
			// A restarted process shares its Buffer with the one before.
			shown := map[*Buffer]bool{}
			for _, p := range procs {
				if !shown[p.Log] {
					shown[p.Log] = true
					t.Logf("--- log of %s:\n%s", p.Name, tail(p.Log.String(), c.LogTail))
				}
			}
		}
	})
	return c
}

// Prefix returns the cluster's topic prefix.
func (c *Cluster) Prefix() string { return c.prefix }

// Build builds the main packages pkgs (module paths relative to the module
// root, such as "./cmd/gateway") into a new temporary directory and returns
// it.
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(root)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin}, pkgs...)...)
	build.Dir = filepath.Dir(string(bytes.TrimSpace(root)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Keys returns the directory of the cluster's keys: "<unit>.key" for each
// unit and app.KeyringFile.
func (c *Cluster) Keys() string { return c.keys }

// Start starts binary, one of the shop's units, with the flags every shop
// binary takes (--brokers, its --unit-key and the --keyring,
// --topic-prefix, --instance-id name, debug text logs, and --http-addr on a
// free port) followed by args.
func (c *Cluster) Start(name, binary string, args ...string) *Proc {
	c.t.Helper()
	addr := FreeAddr(c.t)
	args = append([]string{"--brokers", c.brokers, "--unit-key", filepath.Join(c.keys, binary+".key"),
		"--keyring", filepath.Join(c.keys, app.KeyringFile), "--topic-prefix", c.prefix,
		"--instance-id", name, "--log-format", "text", "--log-level", "debug", "--http-addr", addr}, args...)
	return c.Exec(name, "http://"+addr, binary, args...)
}

// Exec starts binary with args alone; url is the Proc's URL.
func (c *Cluster) Exec(name, url, binary string, args ...string) *Proc {
	c.t.Helper()
	return c.exec(name, url, filepath.Join(c.bin, binary), args, &Buffer{})
}

// Restart starts p's binary again with the same arguments (so on the same
// HTTP address), its output appended to p's, once p has exited.
func (c *Cluster) Restart(p *Proc) *Proc {
	c.t.Helper()
	<-p.Exited
	fmt.Fprintf(p.Log, "\n---- restarted at %s\n", time.Now().Format(time.TimeOnly))
	return c.exec(p.Name, p.URL, p.path, p.args, p.Log)
}

func (c *Cluster) exec(name, url, path string, args []string, log *Buffer) *Proc {
	cmd := exec.Command(path, args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	exited := make(chan struct{})
	p := &Proc{Name: name, URL: url, Log: log, Exited: exited, cmd: cmd, path: path, args: args}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(exited) }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

// Buffer is a process's output, written by its stdout and stderr copiers
// and read by the test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends b.
func (l *Buffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Count returns how many times s occurs in what was written so far.
func (l *Buffer) Count(s string) int { return strings.Count(l.String(), s) }

// tail returns the last n lines of s, or s when n is not above zero.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if n <= 0 || len(lines) <= n {
		return s
	}
	return fmt.Sprintf("(%d lines before)\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "")
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitOK polls p's URL plus path until it answers 200, failing the test if
// p exits or timeout passes first.
func WaitOK(t testing.TB, p *Proc, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.Exited:
			t.Fatalf("%s exited during start:\n%s", p.Name, p.Log)
		default:
		}
		resp, err := http.Get(p.URL + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s%s not 200 after %v:\n%s", p.Name, path, timeout, p.Log)
}

// Metric returns the value of the first series in p's /metrics whose line
// starts with series (a name, or a name and the start of its labels), and
// whether there is one.
func Metric(t testing.TB, p *Proc, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", p.Name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, series) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%s /metrics: %q: %v", p.Name, line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// metricLines returns the lines of p's /metrics that start with prefix.
func metricLines(t testing.TB, p *Proc, prefix string) string {
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// WaitServing waits, at most timeout, until every server process of procs
// holds at least one partition of the request topic of service (a full
// protobuf service name), as its kgrpc_server_partitions_assigned says.
// Readiness does not wait for the consumer group to settle: until it has,
// the first instance may hold every partition, and requests sent then all
// reach it.
func (c *Cluster) WaitServing(service string, timeout time.Duration, procs ...*Proc) {
	c.t.Helper()
	series := `kgrpc_server_partitions_assigned{topic="` + c.prefix + service + `",`
	end := time.Now().Add(timeout)
	for _, p := range procs {
		for {
			if n, _ := Metric(c.t, p, series); n > 0 {
				break
			}
			if time.Now().After(end) {
				c.t.Fatalf("%s holds no partition of %s%s after %v; its series:\n%s", p.Name, c.prefix, service, timeout, metricLines(c.t, p, "kgrpc_server_partitions_assigned"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// API calls the REST API at base with a JSON body (none when body is nil),
// a bearer token (none when empty) and the header name-value pairs of
// header, and decodes the answer as a JSON object.
func API(ctx context.Context, base, method, path, token string, body any, header ...string) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}

// Num reads a JSON number, or an int64 that protojson wrote as a string.
func Num(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		var n int64
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return 0
}
