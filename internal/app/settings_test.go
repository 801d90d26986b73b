package app

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/cli"
)

// Secrets taken from the environment are used but never printed by --help,
// and a flag on the command line wins over its variable.
func TestSecretsStayOutOfHelp(t *testing.T) {
	const secret = "s3cret-signing-key-0123456789"
	const sasl = "security.protocol=SASL_SSL,sasl.password=hunter2-hunter2"
	const dsn = "postgres://shop:pg-hunter3@db:5432/users"
	env := cli.MapLookup(map[string]string{"KGRPC_AUTH_SECRET": secret, "KGRPC_KAFKA_CONFIG": sasl,
		"KGRPC_BROKERS": "kafka:9092", "KGRPC_DB": dsn, "KGRPC_ADMIN_PASSWORD": "hunter4"})
	for _, u := range []Unit{Gateway, Users, Products, Orders} {
		t.Run(u.Name, func(t *testing.T) {
			s, err := u.Parse(nil, env)
			if err != nil {
				t.Fatal(err)
			}
			if s.AuthSecret != secret || s.KafkaConfig != sasl || s.Brokers != "kafka:9092" {
				t.Fatalf("values from the environment not used: %+v", s)
			}
			var help bytes.Buffer
			var h Settings
			if err := cli.Parse(u.Name, u.FlagTable(&h), []string{"-h"}, env, &help); !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("-h: %v", err)
			}
			for _, leak := range []string{secret, "hunter2", "hunter3", "hunter4"} {
				if strings.Contains(help.String(), leak) {
					t.Fatalf("--help prints a secret:\n%s", help.String())
				}
			}
			for _, want := range []string{"$KGRPC_AUTH_SECRET", "$KGRPC_KAFKA_CONFIG", `"kafka:9092"`} {
				if !strings.Contains(help.String(), want) {
					t.Errorf("--help lacks %s:\n%s", want, help.String())
				}
			}
			s, err = u.Parse([]string{"--auth-secret", "from-the-command-line"}, env)
			if err != nil || s.AuthSecret != "from-the-command-line" {
				t.Fatalf("flag = %q, %v", s.AuthSecret, err)
			}
		})
	}
}

// Each binary's flags and variables, and their defaults, are what the
// README documents; a variable that does not parse is an error naming it.
func TestUnitFlags(t *testing.T) {
	tests := []struct {
		unit Unit
		env  map[string]string
		want Settings
	}{
		{Gateway, nil, Settings{HTTPAddr: ":8080", RequestTimeout: 10 * time.Second, ReplyPartition: -1}},
		{Gateway, map[string]string{"KGRPC_HTTP_ADDR": ":1", "KGRPC_REQUEST_TIMEOUT": "3s", "KGRPC_REPLY_PARTITION": "7"},
			Settings{HTTPAddr: ":1", RequestTimeout: 3 * time.Second, ReplyPartition: 7}},
		{Users, map[string]string{"KGRPC_ADMIN_EMAIL": "a@b.c", "KGRPC_ADMIN_PASSWORD": "pw"},
			Settings{HTTPAddr: ":9090", DB: "./data/users.db", AdminEmail: "a@b.c", AdminPassword: "pw"}},
		{Products, map[string]string{"KGRPC_SEED_DEMO": "true", "KGRPC_DB": "/x.db"}, Settings{HTTPAddr: ":9090", DB: "/x.db", SeedDemo: true}},
		{Orders, nil, Settings{HTTPAddr: ":9090", DB: "./data/orders.db", RecoverAfter: 30 * time.Second, ReplyPartition: -1}},
		{Orders, map[string]string{"KGRPC_RECOVER_AFTER": "1m", "KGRPC_PARTITIONS": "12"},
			Settings{HTTPAddr: ":9090", DB: "./data/orders.db", RecoverAfter: time.Minute, ReplyPartition: -1, Partitions: 12}},
	}
	for _, tt := range tests {
		t.Run(tt.unit.Name, func(t *testing.T) {
			s, err := tt.unit.Parse(nil, cli.MapLookup(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			got := Settings{HTTPAddr: s.HTTPAddr, DB: s.DB, AdminEmail: s.AdminEmail, AdminPassword: s.AdminPassword, SeedDemo: s.SeedDemo,
				RequestTimeout: s.RequestTimeout, ReplyPartition: s.ReplyPartition, RecoverAfter: s.RecoverAfter, Partitions: s.Partitions}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if s.LogLevel != "info" || s.LogFormat != "json" {
				t.Errorf("log %q %q, want info json", s.LogLevel, s.LogFormat)
			}
		})
	}
	for _, bad := range []map[string]string{{"KGRPC_PARTITIONS": "six"}, {"KGRPC_RECOVER_AFTER": "30"}, {"KGRPC_SEED_DEMO": "yes"}} {
		for name := range bad {
			unit := Orders
			if name == "KGRPC_SEED_DEMO" {
				unit = Products
			}
			if _, err := unit.Parse(nil, cli.MapLookup(bad)); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%v: err = %v, want one naming %s", bad, err, name)
			}
		}
	}
	// Flags the binary does not take stay unknown.
	if _, err := Gateway.Parse([]string{"--db", "x"}, cli.MapLookup(nil)); err == nil {
		t.Error("gateway took --db")
	}
}

// Kafka properties come from a file (values may hold commas) and from
// --kafka-config, which wins; a malformed line is a clear error.
func TestKafkaConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/kafka.properties"
	body := "# TLS and SASL\n\nsecurity.protocol = SASL_SSL\nssl.cipher.suites=ECDHE-RSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384\nsasl.username=shop\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureKeys(dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	f := Settings{Brokers: "kafka:9092", UnitKey: dir + "/gateway.key", Keyring: dir + "/" + KeyringFile, LogLevel: "info", LogFormat: "json",
		KafkaConfigFile: file, KafkaConfig: "sasl.username=override"}
	if _, err := f.Common(UnitGateway); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.kafkaProperties()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"security.protocol": "SASL_SSL",
		"ssl.cipher.suites": "ECDHE-RSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384",
		"sasl.username":     "override",
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("%s = %v, want %q", k, cfg[k], v)
		}
	}
	if err := os.WriteFile(file, []byte("ok=1\nnot a property\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Common(UnitGateway); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("malformed file: %v, want an error naming line 2", err)
	}
	f.KafkaConfigFile = dir + "/missing.properties"
	if _, err := f.Common(UnitGateway); err == nil || !strings.Contains(err.Error(), "missing.properties") {
		t.Fatalf("missing file: %v, want an error naming it", err)
	}
}

// A split binary needs its own unit's key and the keyring, and refuses the
// removed shared secret with a message that says what replaced it.
func TestUnitKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureKeys(dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	base := Settings{Brokers: "kafka:9092", UnitKey: dir + "/usersvc.key", Keyring: dir + "/" + KeyringFile, LogLevel: "info", LogFormat: "json"}
	if c, err := base.Common(UnitUsers); err != nil || c.Trust.Keys[UnitUsers] == nil {
		t.Fatalf("Common = %+v, %v", c.Trust, err)
	}
	tests := []struct {
		name string
		edit func(*Settings)
		unit string
		want string
	}{
		{"auth secret", func(s *Settings) { s.AuthSecret = "0123456789abcdef0123" }, UnitUsers, "--unit-key"},
		{"no unit key", func(s *Settings) { s.UnitKey = "" }, UnitUsers, "--unit-key (KGRPC_UNIT_KEY) and --keyring (KGRPC_KEYRING) are required"},
		{"another unit's key", func(s *Settings) {}, UnitGateway, "holds the key of unit usersvc, not of gateway"},
		{"missing keyring", func(s *Settings) { s.Keyring = dir + "/nope.json" }, UnitUsers, "nope.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			tc.edit(&s)
			_, err := s.Common(tc.unit)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, new(cli.UsageError)) {
				t.Fatalf("Common = %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
	// A private key others may read is refused.
	if err := os.Chmod(dir+"/usersvc.key", 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Common(UnitUsers); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
}

// The gateway's settings are checked before anything starts, and an error
// names the flag and its variable.
func TestGatewaySettings(t *testing.T) {
	base := Settings{HTTPAddr: ":8080", RequestTimeout: 10 * time.Second, MaxStreamDuration: time.Hour,
		MaxStreamsPerUser: 16, MaxInFlightPerService: 1024, AuthRateLimit: 30, CORSOrigins: "https://a.example, https://b.example"}
	cfg, err := base.Gateway()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxInFlightPerService != 1024 || cfg.RequestTimeout != 10*time.Second || len(cfg.CORSOrigins) != 2 || cfg.AuthRateLimit != 30 {
		t.Errorf("Gateway() = %+v", cfg)
	}
	for _, tc := range []struct {
		edit func(*Settings)
		want string
	}{
		{func(s *Settings) { s.MaxInFlightPerService = -1 }, "--max-inflight-per-service (KGRPC_MAX_INFLIGHT_PER_SERVICE) -1: want 1 or more"},
		{func(s *Settings) { s.MaxStreamsPerUser = -1 }, "--max-streams-per-user (KGRPC_MAX_STREAMS_PER_USER) -1"},
		{func(s *Settings) { s.AuthRateLimit = -1 }, "--auth-rate-limit (KGRPC_AUTH_RATE_LIMIT) -1"},
		{func(s *Settings) { s.RequestTimeout = -time.Second }, "--request-timeout (KGRPC_REQUEST_TIMEOUT) -1s"},
		{func(s *Settings) { s.MaxStreamDuration = -time.Second }, "--max-stream-duration (KGRPC_MAX_STREAM_DURATION) -1s"},
	} {
		s := base
		tc.edit(&s)
		if _, err := s.Gateway(); err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, new(cli.UsageError)) {
			t.Errorf("Gateway() = %v, want a usage error containing %q", err, tc.want)
		}
	}
	// AuthRateLimit 0 is no limit, and a zero duration or bound the default
	// (the platform has no --request-timeout; tests fill Settings in): not
	// errors.
	s := base
	s.AuthRateLimit, s.RequestTimeout, s.MaxStreamsPerUser, s.MaxInFlightPerService = 0, 0, 0, 0
	if _, err := s.Gateway(); err != nil {
		t.Errorf("--auth-rate-limit 0 and no --request-timeout: %v", err)
	}
}
