package main

import (
	"testing"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/cli"
)

// The platform reads the KGRPC_ variables, keeps reading its documented
// PLATFORM_ names when the KGRPC_ one is unset, and a flag wins over both.
func TestPlatformFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, s app.Settings)
	}{
		{name: "defaults", check: func(t *testing.T, s app.Settings) {
			if s.HTTPAddr != "127.0.0.1:8080" || s.DataDir != "./data" || s.Brokers != "" || s.LogFormat != "text" || s.NoDemo {
				t.Errorf("defaults = %+v", s)
			}
		}},
		{name: "KGRPC_BROKERS is honoured", env: map[string]string{"KGRPC_BROKERS": "127.0.0.1:19092", "KGRPC_LOG_FORMAT": "json"},
			check: func(t *testing.T, s app.Settings) {
				if s.Brokers != "127.0.0.1:19092" || s.LogFormat != "json" {
					t.Errorf("brokers %q, log format %q", s.Brokers, s.LogFormat)
				}
			}},
		{name: "PLATFORM_ aliases", env: map[string]string{"PLATFORM_HTTP_ADDR": ":1", "PLATFORM_DATA_DIR": "/d", "PLATFORM_BROKERS": "k:9092",
			"PLATFORM_ADMIN_EMAIL": "a@b.c", "PLATFORM_ADMIN_PASSWORD": "pw", "PLATFORM_AUTH_SECRET": "sec",
			"PLATFORM_NO_DEMO": "yes", "PLATFORM_TOPIC_PREFIX": "p.", "PLATFORM_LOG_LEVEL": "debug"},
			check: func(t *testing.T, s app.Settings) {
				want := app.Settings{HTTPAddr: ":1", DataDir: "/d", Brokers: "k:9092", AdminEmail: "a@b.c", AdminPassword: "pw",
					AuthSecret: "sec", NoDemo: true, TopicPrefix: "p.", LogLevel: "debug"}
				if s.HTTPAddr != want.HTTPAddr || s.DataDir != want.DataDir || s.Brokers != want.Brokers || s.AdminEmail != want.AdminEmail ||
					s.AdminPassword != want.AdminPassword || s.AuthSecret != want.AuthSecret || s.NoDemo != want.NoDemo ||
					s.TopicPrefix != want.TopicPrefix || s.LogLevel != want.LogLevel {
					t.Errorf("got %+v, want %+v", s, want)
				}
			}},
		{name: "PLATFORM_ wins over KGRPC_", env: map[string]string{"KGRPC_DATA_DIR": "/k", "PLATFORM_DATA_DIR": "/p", "KGRPC_BROKERS": "k:1", "PLATFORM_BROKERS": "p:1"},
			check: func(t *testing.T, s app.Settings) {
				if s.DataDir != "/p" || s.Brokers != "p:1" {
					t.Errorf("data dir %q, brokers %q; want /p, p:1", s.DataDir, s.Brokers)
				}
			}},
		{name: "PLATFORM_NO_DEMO set to anything", env: map[string]string{"PLATFORM_NO_DEMO": "0"},
			check: func(t *testing.T, s app.Settings) {
				if !s.NoDemo || s.InstanceID != "" {
					t.Errorf("no demo %v, instance id %q; want true and empty (random)", s.NoDemo, s.InstanceID)
				}
			}},
		{name: "the flag wins", args: []string{"--data-dir", "/f", "--no-demo=false"},
			env: map[string]string{"KGRPC_DATA_DIR": "/k", "PLATFORM_NO_DEMO": "1"},
			check: func(t *testing.T, s app.Settings) {
				if s.DataDir != "/f" || s.NoDemo {
					t.Errorf("data dir %q, no demo %v", s.DataDir, s.NoDemo)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s app.Settings
			if err := cli.Parse("platform", flagTable(&s), tt.args, cli.MapLookup(tt.env), testWriter{t}); err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
	var s app.Settings
	if err := cli.Parse("platform", flagTable(&s), nil, cli.MapLookup(map[string]string{"KGRPC_NO_DEMO": "yes"}), testWriter{t}); err == nil {
		t.Error("KGRPC_NO_DEMO=yes parsed; want an error naming it (KGRPC_ booleans are true or false)")
	}
}
