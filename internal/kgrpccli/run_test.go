package kgrpccli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// --help and help print the commands and every flag with its variable, and
// are not an error.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out bytes.Buffer
		if err := Run(context.Background(), args, &out); err != nil {
			t.Fatalf("kgrpc %v = %v", args, err)
		}
		for _, want := range []string{"kgrpc [flags] dlq list", "-data-dir", "KGRPC_DATA_DIR", "KGRPC_BROKERS", "-unit-key"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("kgrpc %v printed no %q:\n%s", args, want, out.String())
			}
		}
	}
	if err := Run(context.Background(), []string{"--nope"}, new(bytes.Buffer)); !errors.As(err, new(UsageError)) {
		t.Errorf("kgrpc --nope = %v, want a usage error", err)
	}
}

// KGRPC_DATA_DIR stands for --data-dir.
func TestDataDirFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KGRPC_DATA_DIR", dir)
	err := Run(context.Background(), []string{"list"}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "--data-dir: the platform's broker address") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("list with KGRPC_DATA_DIR of no platform = %v, want the data directory's error", err)
	}
}

// KGRPC_BROKERS wins over the data directory's broker, as --brokers does.
func TestBrokersFromEnvironmentWinOverDataDir(t *testing.T) {
	dir := t.TempDir() // no broker-addr: only the data directory would fail
	t.Setenv("KGRPC_DATA_DIR", dir)
	t.Setenv("KGRPC_BROKERS", "127.0.0.1:1")
	err := Run(context.Background(), []string{"--timeout", "1s", "list"}, new(bytes.Buffer))
	if err == nil || strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("list with KGRPC_BROKERS and a data directory without a broker = %v, want a failure to reach 127.0.0.1:1, not the data directory's error", err)
	}
}
