package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
)

// Env returns the environment variable name, or def when it is unset.
func Env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// DurationVar defines duration flag name on fs whose default comes from
// environment variable env (a Go duration such as "30s"), else def. A
// malformed variable ends the process with exit code 2, as a malformed flag
// does.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %s=%q: %v\n", fs.Name(), env, v, err)
			os.Exit(2)
		}
		def = d
	}
	fs.DurationVar(p, name, def, usage)
}

// IntVar defines int flag name on fs whose default comes from environment
// variable env, else def; a malformed variable ends the process with exit
// code 2, as a malformed flag does.
func IntVar(fs *flag.FlagSet, p *int, name, env string, def int, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %s=%q: not an integer\n", fs.Name(), env, v)
			os.Exit(2)
		}
		def = n
	}
	fs.IntVar(p, name, def, usage)
}

// ReplyPartitionUsage is the --reply-partition help of the binaries that
// make calls over Kafka.
const ReplyPartitionUsage = "partition of the shared reply topic to read replies from, -1 for a random one; give each calling instance its own (KGRPC_REPLY_PARTITION)"

// PinReplyPartition adds the reply partition p to c's client options unless
// it is negative (random).
func (c *Common) PinReplyPartition(p int) {
	if p >= 0 {
		c.Client = append(c.Client, kafkatransport.WithReplyPartition(int32(p)))
	}
}

// HideSecret keeps the value that flag name of fs took from environment
// variable env out of --help, which then shows the variable's name as the
// default instead. For flags that may carry passwords or keys.
func HideSecret(fs *flag.FlagSet, name, env string) {
	if f := fs.Lookup(name); f != nil && os.Getenv(env) != "" {
		f.DefValue = "$" + env
	}
}

// Flags are the settings every deployable binary (cmd/gateway, cmd/usersvc,
// cmd/productsvc, cmd/ordersvc) shares. Each flag has a KGRPC_ variable;
// the flag wins.
type Flags struct {
	Brokers         string
	AuthSecret      string
	InstanceID      string
	TopicPrefix     string
	KafkaConfig     string
	KafkaConfigFile string
	LogLevel        string
	LogFormat       string
	Partitions      int
}

// Register defines the shared flags on fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&f.Brokers, "brokers", Env("KGRPC_BROKERS", ""), "Kafka bootstrap servers, required (KGRPC_BROKERS)")
	fs.StringVar(&f.AuthSecret, "auth-secret", Env("KGRPC_AUTH_SECRET", ""), "token signing secret shared by the gateway and the services, at least 16 bytes, required (KGRPC_AUTH_SECRET)")
	fs.StringVar(&f.InstanceID, "instance-id", Env("KGRPC_INSTANCE_ID", host), "this instance's name in logs and Kafka client ids (KGRPC_INSTANCE_ID)")
	fs.StringVar(&f.TopicPrefix, "topic-prefix", Env("KGRPC_TOPIC_PREFIX", ""), "prefix of every topic and consumer group (KGRPC_TOPIC_PREFIX)")
	fs.StringVar(&f.KafkaConfig, "kafka-config", Env("KGRPC_KAFKA_CONFIG", ""), "extra librdkafka properties as k=v,k=v, e.g. security.protocol=SASL_SSL; they win over --kafka-config-file (KGRPC_KAFKA_CONFIG)")
	fs.StringVar(&f.KafkaConfigFile, "kafka-config-file", Env("KGRPC_KAFKA_CONFIG_FILE", ""), "file of extra librdkafka properties, one key=value per line, # comments; values may hold commas (KGRPC_KAFKA_CONFIG_FILE)")
	fs.StringVar(&f.LogLevel, "log-level", Env("KGRPC_LOG_LEVEL", "info"), "debug, info, warn or error (KGRPC_LOG_LEVEL)")
	fs.StringVar(&f.LogFormat, "log-format", Env("KGRPC_LOG_FORMAT", "json"), "json or text (KGRPC_LOG_FORMAT)")
	IntVar(fs, &f.Partitions, "partitions", "KGRPC_PARTITIONS", 0, "partitions of the request and event topics this unit creates when they are missing, 0 for 6; instances of a service beyond it stand by (KGRPC_PARTITIONS)")
	HideSecret(fs, "auth-secret", "KGRPC_AUTH_SECRET")
	HideSecret(fs, "kafka-config", "KGRPC_KAFKA_CONFIG") // may hold a SASL password
}

// Common checks the flags and builds what every unit needs.
func (f *Flags) Common() (Common, error) {
	if f.Brokers == "" {
		return Common{}, errors.New("--brokers (KGRPC_BROKERS) is required")
	}
	if f.AuthSecret == "" {
		return Common{}, errors.New("--auth-secret (KGRPC_AUTH_SECRET) is required")
	}
	signer, err := auth.NewSigner([]byte(f.AuthSecret))
	if err != nil {
		return Common{}, fmt.Errorf("--auth-secret: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return Common{}, fmt.Errorf("--log-level %q: %w", f.LogLevel, err)
	}
	var handler slog.Handler
	switch f.LogFormat {
	case "json":
		handler = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	case "text":
		handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	default:
		return Common{}, fmt.Errorf("--log-format %q: want json or text", f.LogFormat)
	}
	cfg, err := f.kafkaProperties()
	if err != nil {
		return Common{}, err
	}
	if f.Partitions < 0 {
		return Common{}, fmt.Errorf("--partitions %d: want 0 (the default, 6) or more", f.Partitions)
	}
	opts := []kafkatransport.Option{kafkatransport.WithKafkaConfig(cfg)}
	if f.InstanceID != "" { // empty: a random id
		opts = append(opts, kafkatransport.WithInstanceID(f.InstanceID))
	}
	if f.TopicPrefix != "" {
		opts = append(opts, kafkatransport.WithTopicPrefix(f.TopicPrefix))
	}
	return Common{Brokers: f.Brokers, Signer: signer, Logger: slog.New(handler).With("instance", f.InstanceID), Kafka: opts, Partitions: f.Partitions}, nil
}

// kafkaProperties returns the librdkafka properties of --kafka-config-file
// and --kafka-config, the latter winning.
func (f *Flags) kafkaProperties() (kafka.ConfigMap, error) {
	cfg := kafka.ConfigMap{}
	if f.KafkaConfigFile != "" {
		body, err := os.ReadFile(f.KafkaConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-config-file: %w", err)
		}
		if cfg, err = parseKafkaConfigFile(string(body)); err != nil {
			return nil, fmt.Errorf("--kafka-config-file %s: %w", f.KafkaConfigFile, err)
		}
	}
	inline, err := parseKafkaConfig(f.KafkaConfig)
	if err != nil {
		return nil, fmt.Errorf("--kafka-config: %w", err)
	}
	maps.Copy(cfg, inline)
	return cfg, nil
}

// parseKafkaConfigFile parses librdkafka properties, one "key=value" per
// line; blank lines and lines starting with # are skipped, and a value runs
// to the end of its line, commas included.
func parseKafkaConfigFile(body string) (kafka.ConfigMap, error) {
	m := kafka.ConfigMap{}
	for i, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("line %d: %q is not key=value", i+1, line)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// parseKafkaConfig parses "k=v,k=v".
func parseKafkaConfig(s string) (kafka.ConfigMap, error) {
	m := kafka.ConfigMap{}
	for kv := range strings.SplitSeq(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// ServeHealth serves /healthz (200 while the process runs) and /readyz (200
// once ready is true) on addr until ctx ends.
func ServeHealth(ctx context.Context, addr string, ready *atomic.Bool, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	logger.Info("health endpoints listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// Main runs a binary's unit: it parses args with define, builds Common,
// runs run until SIGINT or SIGTERM, and exits non-zero on failure.
func Main(name string, args []string, define func(fs *flag.FlagSet), run func(ctx context.Context, c Common) error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f Flags
	f.Register(fs)
	define(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	c, err := f.Common()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, c); err != nil {
		c.Logger.Error(name+" failed", "err", err)
		os.Exit(1)
	}
	c.Logger.Info(name + " stopped")
}

// RunWithHealth runs unit and the health endpoints on addr together. The
// endpoints stop after the unit; if they fail (say, addr is taken), the unit
// is stopped and the error returned.
func RunWithHealth(ctx context.Context, addr string, ready *atomic.Bool, logger *slog.Logger, unit func(context.Context) error) error {
	uctx, stopUnit := context.WithCancel(ctx)
	defer stopUnit()
	hctx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	herr := make(chan error, 1)
	go func() {
		err := ServeHealth(hctx, addr, ready, logger)
		if err != nil {
			stopUnit()
		}
		herr <- err
	}()
	err := unit(uctx)
	ready.Store(false)
	stopHealth()
	if hErr := <-herr; hErr != nil && !errors.Is(hErr, http.ErrServerClosed) {
		return errors.Join(hErr, err)
	}
	return err
}
