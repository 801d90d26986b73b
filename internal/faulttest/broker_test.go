package faulttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/proctest"
)

// broker is the suite's own broker, which it may stop and start.
type broker struct {
	kind string // "Apache Kafka" or "devkafka"
	addr string
	stop func() error
	// start returns once the broker answers.
	start func() error
}

// moduleRoot returns the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(string(bytes.TrimSpace(out)))
}

// startBroker starts the suite's broker: Apache Kafka through
// scripts/kafka.sh unless FAULT_BROKER=devkafka or java is missing, then a
// devkafka process of c.
func startBroker(t *testing.T, c *proctest.Cluster) *broker {
	t.Helper()
	kind := os.Getenv("FAULT_BROKER")
	if kind == "" {
		kind = "kafka"
		if _, err := exec.LookPath("java"); err != nil {
			kind = "devkafka"
		}
	}
	switch kind {
	case "kafka":
		return startKafka(t)
	case "devkafka":
		return startDevkafka(t, c)
	}
	t.Fatalf("FAULT_BROKER=%q: want kafka or devkafka", kind)
	return nil
}

// startKafka runs a single-node Apache Kafka with scripts/kafka.sh on its
// own ports and cache directory, whose libs link to the shared cache's jars.
func startKafka(t *testing.T) *broker {
	t.Helper()
	root := moduleRoot(t)
	port := 19192
	if p := os.Getenv("FAULT_KAFKA_PORT"); p != "" {
		var err error
		if port, err = strconv.Atoi(p); err != nil {
			t.Fatalf("FAULT_KAFKA_PORT=%q: %v", p, err)
		}
	}
	cache := filepath.Join(root, ".cache", "kafka-faults")
	shared := os.Getenv("KAFKA_CACHE")
	if shared == "" {
		shared = filepath.Join(root, ".cache", "kafka")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(cache, "libs")); os.IsNotExist(err) {
		if _, err := os.Stat(filepath.Join(shared, "libs")); err == nil {
			if err := os.Symlink(filepath.Join(shared, "libs"), filepath.Join(cache, "libs")); err != nil {
				t.Fatal(err)
			}
		}
	}
	script := func(arg string) error {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "kafka.sh"), arg)
		cmd.Env = append(os.Environ(), "KAFKA_CACHE="+cache, "KAFKA_PORT="+strconv.Itoa(port),
			"KAFKA_CONTROLLER_PORT="+strconv.Itoa(port+1))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("scripts/kafka.sh %s: %w\n%s", arg, err, out)
		}
		return nil
	}
	// A broker a killed run left behind is stopped, and old topics go.
	if err := script("reset"); err != nil {
		t.Fatal(err)
	}
	if err := script("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := script("reset"); err != nil {
			t.Error(err)
		}
	})
	return &broker{
		kind:  "Apache Kafka",
		addr:  "127.0.0.1:" + strconv.Itoa(port),
		stop:  func() error { return script("stop") },
		start: func() error { return script("start") },
	}
}

// startDevkafka runs cmd/devkafka with a data directory, so that topics and
// committed offsets survive its restarts; SIGTERM stops it gracefully.
func startDevkafka(t *testing.T, c *proctest.Cluster) *broker {
	t.Helper()
	addr := proctest.FreeAddr(t)
	dir := t.TempDir()
	p := c.Exec("devkafka", "", "devkafka", "--addr", addr, "--data-dir", dir, "--partitions", "6", "--log-level", "warn")
	b := &broker{kind: "devkafka", addr: addr}
	b.start = func() error { return dialUntil(addr, p, 60*time.Second) }
	b.stop = func() error { p.Stop(30 * time.Second); return nil }
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	b.start = func() error {
		p = c.Restart(p)
		return dialUntil(addr, p, 60*time.Second)
	}
	return b
}

// dialUntil waits until addr accepts connections.
func dialUntil(addr string, p *proctest.Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.Exited:
			return fmt.Errorf("devkafka exited:\n%s", p.Log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devkafka does not accept connections on %s after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
