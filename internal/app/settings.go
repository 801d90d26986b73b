package app

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/telemetry"
	"github.com/kgrpc/platform/kafkatransport"
)

// Settings hold the value of every flag of every binary. Each binary takes
// the rows of the flag table its Unit names; the others keep their zero
// values.
type Settings struct {
	Brokers         string
	AuthSecret      string // removed; refused with a message that says what replaced it
	UnitKey         string
	Keyring         string
	InstanceID      string
	TopicPrefix     string
	KafkaConfig     string
	KafkaConfigFile string
	LogLevel        string
	LogFormat       string
	Partitions      int
	CallRetention   time.Duration

	HTTPAddr       string
	DB             string
	AdminEmail     string
	AdminPassword  string
	SeedDemo       bool
	RequestTimeout time.Duration
	// MaxStreamDuration bounds a streaming API request (--max-stream-duration).
	MaxStreamDuration time.Duration
	// MaxStreamsPerUser bounds one user's open streaming API requests
	// (--max-streams-per-user).
	MaxStreamsPerUser int
	// MaxInFlightPerService bounds the gateway's calls in flight to each
	// service (--max-inflight-per-service).
	MaxInFlightPerService int
	CORSOrigins           string
	AuthRateLimit         int
	ReplyPartition        int
	RecoverAfter          time.Duration
	IdempotencyTTL        time.Duration
	TokenTTL              time.Duration

	DataDir string
	NoDemo  bool

	PprofAddr string
}

// Shared are the flags every deployable binary takes, in --help order.
var Shared = []string{"brokers", "unit-key", "keyring", "auth-secret", "instance-id", "topic-prefix", "partitions", "call-retention",
	"kafka-config", "kafka-config-file", "log-level", "log-format", "pprof-addr"}

// table is the one flag table of the repository: every setting, its flag,
// its variable (derived from the flag's name, see cli.Flag.Env), its default
// and whether it is secret. A Unit picks rows by name and may give them
// another default.
func (s *Settings) table() []cli.Flag {
	host, _ := os.Hostname()
	return []cli.Flag{
		{Name: "brokers", Value: &s.Brokers, Usage: "Kafka bootstrap servers: required by the split binaries; the platform runs an embedded broker when empty"},
		{Name: "unit-key", Value: &s.UnitKey,
			Usage: "file of this unit's private keys (mode 0600), made by kgrpc-keys: required by the split binaries"},
		{Name: "keyring", Value: &s.Keyring,
			Usage: "file of every unit's public keys (a JSON Web Key Set), made by kgrpc-keys: required by the split binaries"},
		{Name: "auth-secret", Value: &s.AuthSecret, Secret: true,
			Usage: "removed: the shared secret gave way to per-unit keys (--unit-key, --keyring); setting it is an error"},
		{Name: "instance-id", Value: &s.InstanceID, Default: host, Usage: "this instance's name in logs, correlation ids and Kafka client ids"},
		{Name: "topic-prefix", Value: &s.TopicPrefix,
			Usage: "prefix of every topic and consumer group, to share a cluster"},
		{Name: "partitions", Value: &s.Partitions, Default: "0",
			Usage: "partitions of the request and event topics this unit creates when they are missing, 0 for 6; instances of a service beyond it stand by"},
		{Name: "call-retention", Value: &s.CallRetention, Default: kafkatransport.DefaultCallRetention.String(),
			Usage: "retention of the request and reply topics this unit creates when they are missing (dead-letter and event topics keep the broker's)"},
		{Name: "kafka-config", Value: &s.KafkaConfig, Secret: true, // may hold a SASL password
			Usage: "extra librdkafka properties as k=v,k=v, e.g. security.protocol=SASL_SSL; they win over --kafka-config-file"},
		{Name: "kafka-config-file", Value: &s.KafkaConfigFile,
			Usage: "file of extra librdkafka properties, one key=value per line, # comments; values may hold commas"},
		{Name: "log-level", Value: &s.LogLevel, Default: "info", Usage: "debug, info, warn or error"},
		{Name: "log-format", Value: &s.LogFormat, Default: "json", Usage: "json or text"},
		{Name: "pprof-addr", Value: &s.PprofAddr,
			Usage: "listen address of the Go profiling endpoints (/debug/pprof/), off when empty; keep it on loopback"},

		{Name: "http-addr", Value: &s.HTTPAddr, Default: ":9090", Usage: "listen address: of the REST API (gateway, platform), of /healthz and /readyz (services)"},
		{Name: "db", Value: &s.DB, Secret: true, // a URL may hold a password
			Usage: "database: a SQLite file path, or a PostgreSQL URL postgres://user:password@host:5432/db"},
		{Name: "admin-email", Value: &s.AdminEmail, Usage: "create or promote this admin account at start"},
		{Name: "admin-password", Value: &s.AdminPassword, Secret: true, Usage: "password of a newly created admin account"},
		{Name: "seed-demo", Value: &s.SeedDemo, Default: "false", Usage: "load the demo catalog into an empty store"},
		{Name: "request-timeout", Value: &s.RequestTimeout, Default: "10s", Usage: "deadline of each API request, Kafka calls included (streams: --max-stream-duration)"},
		{Name: "max-stream-duration", Value: &s.MaxStreamDuration, Default: "1h", Usage: "longest a streaming API request (GET /v1/orders/{id}:watch, POST /v1/products:import) may last"},
		{Name: "max-streams-per-user", Value: &s.MaxStreamsPerUser, Default: "16", Usage: "streaming API requests one user may have open at once; more get 429"},
		{Name: "max-inflight-per-service", Value: &s.MaxInFlightPerService, Default: "1024",
			Usage: "calls the gateway may have in flight to one service at once; more get 503 with Retry-After at once"},
		{Name: "auth-rate-limit", Value: &s.AuthRateLimit, Default: "30",
			Usage: "login and registration attempts a minute allowed per client address and per email (more get 429 with Retry-After); 0 for no limit"},
		{Name: "cors-origins", Value: &s.CORSOrigins,
			Usage: "browser origins allowed to call the API, comma-separated (https://shop.example.com), or * for any; none when empty"},
		{Name: "reply-partition", Value: &s.ReplyPartition, Default: "-1",
			Usage: "partition of the shared reply topic to read replies from, -1 for a random one; give each calling instance its own"},
		{Name: "recover-after", Value: &s.RecoverAfter,
			Usage: "release the stock of an order attempt that stored no order (it crashed or failed) this long after it began; must exceed the 10s call timeout plus clock skew"},

		{Name: "idempotency-ttl", Value: &s.IdempotencyTTL, Default: sqlstore.DefaultIdempotencyTTL.String(),
			Usage: "how long a service keeps the outcome of a call with side effects, to answer its retries with the same Idempotency-Key (and its redeliveries) without running it again"},
		{Name: "token-ttl", Value: &s.TokenTTL, Default: auth.DefaultTokenTTL.String(),
			Usage: "how long the access tokens of login last"},

		{Name: "data-dir", Value: &s.DataDir, Default: "./data",
			Usage: "directory for the databases, the embedded broker's log and the units' keys (keys/)"},
		{Name: "no-demo", Value: &s.NoDemo, Default: "false",
			Usage: "do not load the demo catalog into a new data directory"},
	}
}

// Origins returns --cors-origins as a list, without empty entries.
func (s Settings) Origins() []string {
	var out []string
	for o := range strings.SplitSeq(s.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// Flags returns the rows of the flag table that names select, bound to s.
// A name may carry another default as "name=default".
func (s *Settings) Flags(names ...string) []cli.Flag {
	rows := map[string]cli.Flag{}
	for _, f := range s.table() {
		rows[f.Name] = f
	}
	out := make([]cli.Flag, 0, len(names))
	for _, n := range names {
		name, def, override := strings.Cut(n, "=")
		f, ok := rows[name]
		if !ok {
			panic("app: no flag --" + name + " in the table") // a bug in a Unit
		}
		if override {
			f = f.WithDefault(def)
		}
		out = append(out, f)
	}
	return out
}

// ErrAuthSecret is the error of a set --auth-secret: it names what replaced
// it.
var ErrAuthSecret = cli.Usagef("--auth-secret (KGRPC_AUTH_SECRET) is no longer used: each unit has its own keys. " +
	"Make them with `go run ./cmd/kgrpc-keys init --dir keys`, then give each binary --unit-key keys/<unit>.key " +
	"and --keyring keys/keyring.json (KGRPC_UNIT_KEY, KGRPC_KEYRING); cmd/platform keeps its keys in <data-dir>/keys")

// Common checks the shared settings of the deployable binary of unit and
// builds what it needs. Its errors are cli.UsageErrors.
func (s Settings) Common(unit string) (Common, error) {
	if s.AuthSecret != "" {
		return Common{}, ErrAuthSecret
	}
	if s.Brokers == "" {
		return Common{}, cli.Usagef("--brokers (KGRPC_BROKERS) is required")
	}
	if s.UnitKey == "" || s.Keyring == "" {
		return Common{}, cli.Usagef("--unit-key (KGRPC_UNIT_KEY) and --keyring (KGRPC_KEYRING) are required: make them with `go run ./cmd/kgrpc-keys init --dir keys`")
	}
	t, err := LoadTrust(unit, s.UnitKey, s.Keyring)
	if err != nil {
		return Common{}, cli.UsageError{Err: err}
	}
	logger, err := s.Logger()
	if err != nil {
		return Common{}, err
	}
	c, err := s.CommonWith(logger)
	if err != nil {
		return c, err
	}
	if c.Telemetry, err = telemetry.New(false, logger); err != nil {
		return Common{}, cli.UsageError{Err: err}
	}
	c.Brokers, c.Trust = s.Brokers, t
	return c, nil
}

// Logger returns the logger --log-level and --log-format describe, on
// stderr; lines logged with a context that carries a span have its
// trace_id and span_id.
func (s Settings) Logger() (*slog.Logger, error) {
	logger, err := cli.NewLogger(s.LogLevel, s.LogFormat, os.Stderr)
	if err != nil {
		return nil, cli.UsageError{Err: err}
	}
	return slog.New(telemetry.LogHandler(logger.Handler())), nil
}

// CommonWith checks the Kafka settings of s (properties, partitions,
// instance id, topic prefix) and builds Common from them and logger,
// without Brokers and Trust: for cmd/platform, which checks its settings
// before it starts its own broker and keeps its own keys, then fills
// those in.
func (s Settings) CommonWith(logger *slog.Logger) (Common, error) {
	cfg, err := s.kafkaProperties()
	if err != nil {
		return Common{}, cli.UsageError{Err: err}
	}
	if s.Partitions < 0 {
		return Common{}, cli.Usagef("--partitions %d: want 0 (the default, 6) or more", s.Partitions)
	}
	opts := []kafkatransport.Option{kafkatransport.WithKafkaConfig(cfg)}
	if s.CallRetention < 0 {
		return Common{}, cli.Usagef("--call-retention %v: want a positive duration", s.CallRetention)
	}
	if s.CallRetention > 0 { // zero: the transport's default
		opts = append(opts, kafkatransport.WithCallRetention(s.CallRetention))
	}
	if s.InstanceID != "" { // empty: a random id
		opts = append(opts, kafkatransport.WithInstanceID(s.InstanceID))
		logger = logger.With("instance", s.InstanceID)
	}
	if s.TopicPrefix != "" {
		opts = append(opts, kafkatransport.WithTopicPrefix(s.TopicPrefix))
	}
	return Common{Logger: logger, Kafka: opts, Partitions: s.Partitions}, nil
}

// Gateway checks the gateway's settings of s and returns its
// configuration; Listening is left to the caller. cmd/platform calls it
// before it starts anything, so a bad value fails at once.
func (s Settings) Gateway() (GatewayConfig, error) {
	switch {
	case s.RequestTimeout < 0: // 0: the default (cmd/platform has no flag; tests fill Settings in)
		return GatewayConfig{}, cli.Usagef("--request-timeout (KGRPC_REQUEST_TIMEOUT) %v: want a positive duration", s.RequestTimeout)
	case s.MaxStreamDuration < 0:
		return GatewayConfig{}, cli.Usagef("--max-stream-duration (KGRPC_MAX_STREAM_DURATION) %v: want a positive duration", s.MaxStreamDuration)
	case s.MaxStreamsPerUser < 0: // 0: the default, as for the durations
		return GatewayConfig{}, cli.Usagef("--max-streams-per-user (KGRPC_MAX_STREAMS_PER_USER) %d: want 1 or more", s.MaxStreamsPerUser)
	case s.MaxInFlightPerService < 0:
		return GatewayConfig{}, cli.Usagef("--max-inflight-per-service (KGRPC_MAX_INFLIGHT_PER_SERVICE) %d: want 1 or more", s.MaxInFlightPerService)
	case s.AuthRateLimit < 0:
		return GatewayConfig{}, cli.Usagef("--auth-rate-limit (KGRPC_AUTH_RATE_LIMIT) %d: want 0 (no limit) or more", s.AuthRateLimit)
	}
	return GatewayConfig{HTTPAddr: s.HTTPAddr, RequestTimeout: s.RequestTimeout, MaxStreamDuration: s.MaxStreamDuration,
		MaxStreamsPerUser: s.MaxStreamsPerUser, MaxInFlightPerService: s.MaxInFlightPerService,
		CORSOrigins: s.Origins(), AuthRateLimit: s.AuthRateLimit}, nil
}

// kafkaProperties returns the librdkafka properties of --kafka-config-file
// and --kafka-config, the latter winning.
func (s Settings) kafkaProperties() (kafka.ConfigMap, error) {
	cfg := kafka.ConfigMap{}
	if s.KafkaConfigFile != "" {
		body, err := os.ReadFile(s.KafkaConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-config-file: %w", err)
		}
		if cfg, err = parseProperties(string(body), "\n"); err != nil {
			return nil, fmt.Errorf("--kafka-config-file %s: %w", s.KafkaConfigFile, err)
		}
	}
	inline, err := parseProperties(s.KafkaConfig, ",")
	if err != nil {
		return nil, fmt.Errorf("--kafka-config: %w", err)
	}
	maps.Copy(cfg, inline)
	return cfg, nil
}

// parseProperties parses librdkafka properties "key=value" separated by sep:
// a line of a properties file ("\n": values run to the end of their line,
// commas included; lines starting with # are comments) or an item of
// --kafka-config (","). Blank entries are skipped.
func parseProperties(body, sep string) (kafka.ConfigMap, error) {
	m := kafka.ConfigMap{}
	for i, entry := range strings.Split(body, sep) {
		entry = strings.TrimSpace(entry)
		if entry == "" || (sep == "\n" && strings.HasPrefix(entry, "#")) {
			continue
		}
		k, v, ok := strings.Cut(entry, "=")
		if !ok || strings.TrimSpace(k) == "" {
			if sep == "\n" {
				return nil, fmt.Errorf("line %d: %q is not key=value", i+1, entry)
			}
			return nil, fmt.Errorf("%q is not key=value", entry)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// ReadKafkaConfigFile returns the librdkafka properties of the file at path,
// read as --kafka-config-file reads it.
func ReadKafkaConfigFile(path string) (kafka.ConfigMap, error) {
	return Settings{KafkaConfigFile: path}.kafkaProperties()
}
