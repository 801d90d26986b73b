package kafkatransport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kgrpc/platform/kafkatransport"
)

// unreachable is a broker address no test connects to: option errors come
// before any connection.
const unreachable = "127.0.0.1:1"

func TestInvalidOptionsAreErrors(t *testing.T) {
	ctx := context.Background()
	server := func(opts ...kafkatransport.ServerOption) func() error {
		return func() error { _, err := kafkatransport.NewServer(unreachable, opts...); return err }
	}
	client := func(opts ...kafkatransport.ClientOption) func() error {
		return func() error {
			c, err := kafkatransport.Dial(ctx, unreachable, opts...)
			if err == nil {
				_ = c.Close()
			}
			return err
		}
	}
	publisher := func(opts ...kafkatransport.PublisherOption) func() error {
		return func() error {
			p, err := kafkatransport.NewPublisher(unreachable, opts...)
			if err == nil {
				_ = p.Close(ctx)
			}
			return err
		}
	}
	subscriber := func(group string, opts ...kafkatransport.SubscriberOption) func() error {
		return func() error { _, err := kafkatransport.NewSubscriber(unreachable, group, opts...); return err }
	}
	tests := []struct {
		name string
		make func() error
		want string // in the error
	}{
		{"nil logger", server(kafkatransport.WithLogger(nil)), "WithLogger(nil)"},
		{"empty instance id", publisher(kafkatransport.WithInstanceID("")), "WithInstanceID"},
		{"replication factor 0", subscriber("g", kafkatransport.WithReplicationFactor(0)), "WithReplicationFactor(0)"},
		{"replication factor -2", server(kafkatransport.WithReplicationFactor(-2)), "WithReplicationFactor(-2)"},
		{"partitions 0", server(kafkatransport.WithPartitions(0)), "WithPartitions(0)"},
		{"partitions -1", publisher(kafkatransport.WithPartitions(-1)), "WithPartitions(-1)"},
		{"default timeout 0", client(kafkatransport.WithDefaultTimeout(0)), "WithDefaultTimeout(0s)"},
		{"default timeout negative", subscriber("g", kafkatransport.WithDefaultTimeout(-time.Second)), "WithDefaultTimeout(-1s)"},
		{"drain timeout 0", server(kafkatransport.WithDrainTimeout(0)), "WithDrainTimeout(0s)"},
		{"stall timeout 0", subscriber("g", kafkatransport.WithStallTimeout(0)), "WithStallTimeout(0s)"},
		{"call retention 0", client(kafkatransport.WithCallRetention(0)), "WithCallRetention(0s)"},
		{"empty reply topic", client(kafkatransport.WithReplyTopic("", 16)), `WithReplyTopic("", 16)`},
		{"reply topic without partitions", client(kafkatransport.WithReplyTopic("r", 0)), `WithReplyTopic("r", 0)`},
		{"reply partition -2", client(kafkatransport.WithReplyPartition(-2)), "WithReplyPartition(-2)"},
		{"nil client interceptor", client(kafkatransport.WithUnaryClientInterceptors(nil)), "WithUnaryClientInterceptors(nil)"},
		{"nil server interceptor", server(kafkatransport.WithUnaryServerInterceptors(nil)), "WithUnaryServerInterceptors(nil)"},
		{"retry attempts 0", client(kafkatransport.WithRetry(kafkatransport.RetryPolicy{})), "WithRetry"},
		{"retry without backoff", client(kafkatransport.WithRetry(kafkatransport.RetryPolicy{MaxAttempts: 2})), "WithRetry"},
		{"retry max backoff below backoff", client(kafkatransport.WithRetry(kafkatransport.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second, MaxBackoff: time.Millisecond})), "WithRetry"},
		{"retry negative hedge delay", client(kafkatransport.WithRetry(kafkatransport.RetryPolicy{MaxAttempts: 1, HedgeDelay: -1})), "WithRetry"},
		{"max concurrency 0", server(kafkatransport.WithMaxConcurrency(0)), "WithMaxConcurrency(0)"},
		{"event attempts 0", subscriber("g", kafkatransport.WithEventRetry(0, time.Millisecond, time.Second)), "WithEventRetry(0, 1ms, 1s)"},
		{"event backoff 0", subscriber("g", kafkatransport.WithEventRetry(1, 0, time.Second)), "WithEventRetry(1, 0s, 1s)"},
		{"event max backoff below backoff", subscriber("g", kafkatransport.WithEventRetry(1, time.Second, time.Millisecond)), "WithEventRetry(1, 1s, 1ms)"},
		{"empty group", subscriber(""), "empty consumer group"},
		{"nil option", server(nil), "nil option"},
		{"zero option", server(kafkatransport.TopicOption{}), "zero-value option"},
		{"invalid inside WithOptions", server(kafkatransport.WithOptions(kafkatransport.WithTopicPrefix("p"), kafkatransport.WithLogger(nil))), "WithLogger(nil)"},
		{"every invalid option reported", server(kafkatransport.WithPartitions(0), kafkatransport.WithMaxConcurrency(0)), "WithMaxConcurrency(0)"},
		{"every invalid option reported, the first too", server(kafkatransport.WithPartitions(0), kafkatransport.WithMaxConcurrency(0)), "WithPartitions(0)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.make()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("valid values", func(t *testing.T) {
		valid := kafkatransport.WithOptions(kafkatransport.WithLogger(slog.Default()), kafkatransport.WithInstanceID("i"),
			kafkatransport.WithReplicationFactor(-1), kafkatransport.WithTopicPrefix(""))
		for name, make := range map[string]func() error{
			"server": server(valid, kafkatransport.WithPartitions(1), kafkatransport.WithDefaultTimeout(time.Second),
				kafkatransport.WithDrainTimeout(time.Second), kafkatransport.WithMaxConcurrency(1)),
			"publisher":  publisher(valid, kafkatransport.WithPartitions(1)),
			"subscriber": subscriber("g", valid, kafkatransport.WithEventRetry(1, time.Second, time.Second), kafkatransport.WithDrainTimeout(time.Second)),
		} {
			if err := make(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// TestCrossRoleOptionsDoNotCompile type-checks small programs that give a
// constructor an option of another role, and one that gives each
// constructor its own options, as the control.
func TestCrossRoleOptionsDoNotCompile(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	programs := map[string]string{
		"ok": `_, _ = kafkatransport.NewServer(b, kafkatransport.WithTopicPrefix("p"), kafkatransport.WithPartitions(3), kafkatransport.WithDrainTimeout(time.Second), kafkatransport.WithDefaultTimeout(time.Second), kafkatransport.WithMaxConcurrency(1))
	_, _ = kafkatransport.Dial(ctx, b, kafkatransport.WithTopicPrefix("p"), kafkatransport.WithReplyPartition(3), kafkatransport.WithDefaultTimeout(time.Second))
	_, _ = kafkatransport.NewPublisher(b, kafkatransport.WithTopicPrefix("p"), kafkatransport.WithPartitions(3))
	_, _ = kafkatransport.NewSubscriber(b, "g", kafkatransport.WithTopicPrefix("p"), kafkatransport.WithPartitions(3), kafkatransport.WithDrainTimeout(time.Second), kafkatransport.WithStallTimeout(time.Second), kafkatransport.WithEventRetry(1, time.Second, time.Second))`,
		"serverreplypartition":     `_, _ = kafkatransport.NewServer(b, kafkatransport.WithReplyPartition(3))`,
		"clientpartitions":         `_, _ = kafkatransport.Dial(ctx, b, kafkatransport.WithPartitions(3))`,
		"clientdraintimeout":       `_, _ = kafkatransport.Dial(ctx, b, kafkatransport.WithDrainTimeout(time.Second))`,
		"clientstalltimeout":       `_, _ = kafkatransport.Dial(ctx, b, kafkatransport.WithStallTimeout(time.Second))`,
		"publisherdefaulttimeout":  `_, _ = kafkatransport.NewPublisher(b, kafkatransport.WithDefaultTimeout(time.Second))`,
		"subscriberconcurrency":    `_, _ = kafkatransport.NewSubscriber(b, "g", kafkatransport.WithMaxConcurrency(1))`,
		"serverclientinterceptors": `_, _ = kafkatransport.NewServer(b, kafkatransport.WithUnaryClientInterceptors())`,
	}
	// The programs live in an overlay: nothing is written into the module.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	overlay := map[string]map[string]string{"Replace": {}}
	var pkgs []string
	for name, body := range programs {
		src := filepath.Join(dir, name+".go")
		prog := fmt.Sprintf(`package crossrole

import (
	"context"
	"time"

	"github.com/kgrpc/platform/kafkatransport"
)

func f() {
	ctx, b := context.Background(), "localhost:9092"
	_, _ = ctx, time.Second
	%s
}
`, body)
		if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
			t.Fatal(err)
		}
		pkg := filepath.Join(wd, "testdata", "crossrole", name)
		overlay["Replace"][filepath.Join(pkg, "main.go")] = src
		pkgs = append(pkgs, "./"+filepath.Join("testdata", "crossrole", name))
	}
	ov, err := json.Marshal(overlay)
	if err != nil {
		t.Fatal(err)
	}
	ovFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovFile, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goTool, append([]string{"build", "-overlay", ovFile}, pkgs...)...)
	out, _ := cmd.CombinedOutput()
	t.Logf("go build:\n%s", out)
	for name := range programs {
		var refused, mentioned bool
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, filepath.Join(dir, name+".go")+":") {
				mentioned = true
				refused = refused || strings.Contains(line, "does not implement kafkatransport.")
			}
		}
		if name == "ok" && mentioned {
			t.Errorf("the control program does not compile")
		}
		if name != "ok" && !refused {
			t.Errorf("program %s compiles, want a type error", name)
		}
	}
}
