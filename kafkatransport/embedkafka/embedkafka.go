package embedkafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultAddr is the listen address used when [Config.Addr] is empty: the
// loopback interface and a port chosen by the operating system.
const DefaultAddr = "127.0.0.1:0"

// DefaultPartitions is the partition count used when [Config.Partitions] is
// zero.
const DefaultPartitions = 1

// MinSessionTimeout is the smallest consumer-group session timeout the broker
// accepts (Apache Kafka's group.min.session.timeout.ms defaults to 6s).
const MinSessionTimeout = 100 * time.Millisecond

// Config configures an embedded broker. The zero value is a usable in-memory
// broker on 127.0.0.1 with an OS-chosen port.
type Config struct {
	// Addr is the host:port to listen on. Default: [DefaultAddr]. Port 0
	// lets the operating system choose; [Broker.Addr] tells which.
	Addr string

	// AdvertisedHost is the host the broker tells clients to connect to in
	// metadata responses. Default: the host of Addr, or 127.0.0.1 when
	// Addr's host is empty or unspecified (0.0.0.0, ::). Set it when clients
	// reach the broker under another name, for example from a container.
	AdvertisedHost string

	// DataDir, when not empty, keeps the broker's state (topics, records,
	// groups, committed offsets) in this directory and reloads it on the
	// next Start with the same directory. Default: memory only.
	DataDir string

	// SyncWrites fsyncs every produced batch when DataDir is set. Default:
	// false, like Kafka, which leaves flushing to the OS page cache.
	SyncWrites bool

	// Partitions is the partition count of topics created automatically
	// and of CreateTopics requests that ask for the broker default (-1).
	// Default: [DefaultPartitions], like Kafka's num.partitions.
	Partitions int

	// DisableAutoCreateTopics makes the broker refuse to create topics
	// that clients merely mention in metadata requests (producing to or
	// subscribing to an unknown topic). Default: false, auto-creation is
	// allowed like Kafka's auto.create.topics.enable=true.
	DisableAutoCreateTopics bool

	// BrokerConfigs are extra broker-level configs passed to kfake (see
	// kfake.BrokerConfigs for the supported keys). Default: none.
	BrokerConfigs map[string]string

	// Logger receives the broker's own logs: kfake errors and warnings at
	// their slog levels, and its per-request info and debug logs at
	// slog.LevelDebug and slog.LevelDebug-4. Default: discard.
	Logger *slog.Logger
}

// Broker is a running embedded broker. Close it to stop listening and, with a
// data directory, to flush its state to disk.
type Broker struct {
	cluster *kfake.Cluster
	addr    string

	closeOnce sync.Once
}

// Start starts a one-broker kfake cluster as configured by cfg. The broker is
// accepting connections when Start returns.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.Partitions < 0 {
		return nil, fmt.Errorf("embedkafka: partitions must be positive, got %d", cfg.Partitions)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedkafka: listen address %q: %w", cfg.Addr, err)
	}
	advertised := cfg.AdvertisedHost
	if advertised == "" {
		advertised = host
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			advertised = "127.0.0.1"
		}
	}

	var ln *advertisedListener
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("embedkafka"),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.GroupMinSessionTimeout(MinSessionTimeout),
		kfake.WithLogger(slogLogger{cfg.Logger}),
		// kfake asks for 127.0.0.1:0; we listen where we were told and
		// advertise the configured host with the port actually bound.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			l, err := net.Listen(network, cfg.Addr)
			if err != nil {
				return nil, err
			}
			_, port, _ := net.SplitHostPort(l.Addr().String())
			ln = &advertisedListener{Listener: l, addr: advertisedAddr{net.JoinHostPort(advertised, port)}}
			return ln, nil
		}),
	}
	if !cfg.DisableAutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
		if cfg.SyncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	if len(cfg.BrokerConfigs) > 0 {
		opts = append(opts, kfake.BrokerConfigs(cfg.BrokerConfigs))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedkafka: start broker on %s: %w", cfg.Addr, err)
	}
	if ln == nil {
		c.Close()
		return nil, errors.New("embedkafka: broker started without a listener")
	}
	return &Broker{cluster: c, addr: ln.addr.s}, nil
}

// Addr returns the bootstrap address clients use, host:port, suitable for
// bootstrap.servers.
func (b *Broker) Addr() string { return b.addr }

// Cluster returns the underlying kfake cluster, for tests that inject faults
// or control requests. Most callers never need it. Adding nodes through it is
// not supported: every node would try to listen on [Config.Addr].
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker, closing client connections. With a data directory
// it first writes the broker's state to disk. Close is safe to call more
// than once; it always returns nil.
func (b *Broker) Close() error {
	b.closeOnce.Do(b.cluster.Close)
	return nil
}

// Run starts a broker as [Start] does, calls ready (if not nil) with it, and
// serves until ctx is done, then closes the broker.
func Run(ctx context.Context, cfg Config, ready func(*Broker)) error {
	b, err := Start(cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	if ready != nil {
		ready(b)
	}
	<-ctx.Done()
	return nil
}

// advertisedListener is a net.Listener whose Addr is the address the broker
// advertises in metadata, since kfake advertises its listener's address.
type advertisedListener struct {
	net.Listener
	addr advertisedAddr
}

func (l *advertisedListener) Addr() net.Addr { return l.addr }

type advertisedAddr struct{ s string }

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return a.s }

// slogLogger adapts a *slog.Logger to kfake.Logger. kfake logs every request
// at its info level, so its info and debug levels map below slog's info.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var lv slog.Level
	switch level {
	case kfake.LogLevelError:
		lv = slog.LevelError
	case kfake.LogLevelWarn:
		lv = slog.LevelWarn
	case kfake.LogLevelInfo:
		lv = slog.LevelDebug
	case kfake.LogLevelDebug:
		lv = slog.LevelDebug - 4
	default:
		return
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lv) {
		return
	}
	s.l.Log(ctx, lv, fmt.Sprintf(format, args...), "component", "kfake")
}
