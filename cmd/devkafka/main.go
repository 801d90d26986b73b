// Command devkafka runs an embedded, single-broker Kafka (kfake, through
// kafkatransport/embedkafka) for local development: point services, the gateway or
// `KAFKA_BROKERS=127.0.0.1:9092 go test ./...` at it instead of installing
// Apache Kafka.
//
// Usage:
//
//	devkafka [--addr 127.0.0.1:9092] [--data-dir DIR] [--partitions 1] [--log-level info]
//
// Every flag can also come from the environment: KGRPC_ADDR, KGRPC_DATA_DIR,
// KGRPC_ADVERTISED_HOST, KGRPC_PARTITIONS, KGRPC_LOG_LEVEL, or the
// DEVKAFKA_ names it read first, which win when both are set; a variable set
// to "" counts as unset; flags win over variables. With a
// data directory the broker's topics, records and committed offsets survive
// restarts. SIGINT or SIGTERM stops the broker gracefully, writing its state to
// the data directory.
package main

import (
	"context"
	"log/slog"
	"os"
	"strconv"

	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/kafkatransport/embedkafka"
)

func main() {
	var cfg embedkafka.Config
	var level string
	// It read its variables with os.Getenv: one set to "" counts as unset.
	cli.Main("devkafka", flagTable(&cfg, &level), cli.NonEmpty(os.LookupEnv), func(ctx context.Context) error {
		logger, err := cli.NewLogger(level, "text", os.Stderr)
		if err != nil {
			return cli.UsageError{Err: err}
		}
		return serve(ctx, cfg, logger, nil)
	})
}

// serve starts the broker of cfg, logs where it listens and serves until
// ctx is done. ready, when not nil, is told the broker's address once it
// accepts connections.
func serve(ctx context.Context, cfg embedkafka.Config, logger *slog.Logger, ready func(addr string)) error {
	cfg.Logger = logger.With("component", "kfake")
	err := embedkafka.Run(ctx, cfg, func(b *embedkafka.Broker) {
		logger.Info("devkafka listening", "addr", b.Addr(), "data_dir", cfg.DataDir, "partitions", cfg.Partitions)
		if ready != nil {
			ready(b.Addr())
		}
	})
	if err != nil {
		return err
	}
	logger.Info("devkafka stopped")
	return nil
}

// flagTable binds devkafka's flags to cfg and level. Each reads its KGRPC_
// variable (KGRPC_ADDR, KGRPC_DATA_DIR, KGRPC_ADVERTISED_HOST,
// KGRPC_PARTITIONS, KGRPC_LOG_LEVEL) and the DEVKAFKA_ one this command read
// first, which wins when both are set.
func flagTable(cfg *embedkafka.Config, level *string) []cli.Flag {
	flags := []cli.Flag{
		{Name: "addr", Value: &cfg.Addr, Default: "127.0.0.1:9092", Usage: "listen host:port"},
		{Name: "data-dir", Value: &cfg.DataDir, Usage: "directory that keeps topics, records and offsets across restarts; empty keeps them in memory"},
		{Name: "advertised-host", Value: &cfg.AdvertisedHost, Usage: "host advertised to clients; default the listen host, or 127.0.0.1 for 0.0.0.0"},
		{Name: "partitions", Value: &cfg.Partitions, Default: strconv.Itoa(embedkafka.DefaultPartitions),
			Usage: "partition count of auto-created topics and of CreateTopics asking for the default"},
		{Name: "log-level", Value: level, Default: "info", Usage: "log level: debug (every request), info, warn, error"},
	}
	for i := range flags {
		flags[i] = flags[i].WithAlias("DEVKAFKA_")
	}
	return flags
}
