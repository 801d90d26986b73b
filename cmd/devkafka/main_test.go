package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/kafkatransport/embedkafka"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      embedkafka.Config
		wantLevel slog.Level
		wantErr   bool
	}{
		{name: "defaults", want: embedkafka.Config{Addr: "127.0.0.1:9092", Partitions: 1}},
		{
			name: "env",
			env:  map[string]string{"DEVKAFKA_ADDR": "0.0.0.0:19092", "DEVKAFKA_DATA_DIR": "/d", "DEVKAFKA_PARTITIONS": "4", "DEVKAFKA_LOG_LEVEL": "debug"},
			want: embedkafka.Config{Addr: "0.0.0.0:19092", DataDir: "/d", Partitions: 4}, wantLevel: slog.LevelDebug,
		},
		{
			name: "flags win over env",
			args: []string{"--addr", "127.0.0.1:1", "--data-dir", "/f", "--partitions", "2", "--advertised-host", "kafka", "--log-level", "warn"},
			env:  map[string]string{"DEVKAFKA_ADDR": "0.0.0.0:19092", "DEVKAFKA_DATA_DIR": "/d"},
			want: embedkafka.Config{Addr: "127.0.0.1:1", DataDir: "/f", Partitions: 2, AdvertisedHost: "kafka"}, wantLevel: slog.LevelWarn,
		},
		{
			name: "KGRPC_ names, DEVKAFKA_ winning when both are set",
			env:  map[string]string{"KGRPC_ADDR": "127.0.0.1:2", "DEVKAFKA_ADDR": "0.0.0.0:19092", "KGRPC_PARTITIONS": "3", "KGRPC_LOG_LEVEL": "error"},
			want: embedkafka.Config{Addr: "0.0.0.0:19092", Partitions: 3}, wantLevel: slog.LevelError,
		},
		{name: "bad partitions env", env: map[string]string{"DEVKAFKA_PARTITIONS": "x"}, wantErr: true},
		{name: "bad level", args: []string{"--log-level", "loud"}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, level, err := parseFlags(tt.args, cli.MapLookup(tt.env), io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got.Addr != tt.want.Addr || got.DataDir != tt.want.DataDir || got.Partitions != tt.want.Partitions || got.AdvertisedHost != tt.want.AdvertisedHost {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
			if level != tt.wantLevel {
				t.Errorf("level = %v, want %v", level, tt.wantLevel)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, embedkafka.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 1}, slog.New(slog.NewTextHandler(&stderr, nil)), func(a string) { ready <- a })
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	}
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"devkafka listening", "addr=" + addr, "devkafka stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

// parseFlags reads args with defaults from env through main's flag table
// and checks --log-level as main does.
func parseFlags(args []string, env cli.Lookup, stderr io.Writer) (embedkafka.Config, slog.Level, error) {
	var cfg embedkafka.Config
	var level string
	if err := cli.Parse("devkafka", flagTable(&cfg, &level), args, env, stderr); err != nil {
		return embedkafka.Config{}, 0, err
	}
	if _, err := cli.NewLogger(level, "text", io.Discard); err != nil {
		return embedkafka.Config{}, 0, err
	}
	var l slog.Level
	err := l.UnmarshalText([]byte(level))
	return cfg, l, err
}
