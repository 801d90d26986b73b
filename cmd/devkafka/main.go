// Command devkafka runs an embedded, single-broker Kafka (kfake, through
// internal/embedkafka) for local development: point services, the gateway or
// `KAFKA_BROKERS=127.0.0.1:9092 go test ./...` at it instead of installing
// Apache Kafka.
//
// Usage:
//
//	devkafka [--addr 127.0.0.1:9092] [--data-dir DIR] [--partitions 1] [--log-level info]
//
// Every flag can also come from the environment: DEVKAFKA_ADDR,
// DEVKAFKA_DATA_DIR, DEVKAFKA_PARTITIONS, DEVKAFKA_LOG_LEVEL; flags win. With a
// data directory the broker's topics, records and committed offsets survive
// restarts. SIGINT or SIGTERM stops the broker gracefully, writing its state to
// the data directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/kgrpc/platform/internal/embedkafka"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "devkafka:", err)
		os.Exit(1)
	}
}

// run parses args (with defaults from getenv), starts the broker, logs to
// stderr where it listens and serves until ctx is done. ready, when not nil,
// is told the broker's address once it accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) error {
	cfg, level, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = logger.With("component", "kfake")
	err = embedkafka.Run(ctx, cfg, func(b *embedkafka.Broker) {
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

// parseFlags reads the command line, taking defaults from the DEVKAFKA_*
// environment variables.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (embedkafka.Config, slog.Level, error) {
	envOr := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("DEVKAFKA_ADDR", "127.0.0.1:9092"), "listen `host:port` (env DEVKAFKA_ADDR)")
	dataDir := fs.String("data-dir", envOr("DEVKAFKA_DATA_DIR", ""), "`directory` that keeps topics, records and offsets across restarts; empty keeps them in memory (env DEVKAFKA_DATA_DIR)")
	advertised := fs.String("advertised-host", envOr("DEVKAFKA_ADVERTISED_HOST", ""), "`host` advertised to clients; default the listen host, or 127.0.0.1 for 0.0.0.0 (env DEVKAFKA_ADVERTISED_HOST)")
	defParts, err := strconv.Atoi(envOr("DEVKAFKA_PARTITIONS", strconv.Itoa(embedkafka.DefaultPartitions)))
	if err != nil {
		return embedkafka.Config{}, 0, fmt.Errorf("DEVKAFKA_PARTITIONS: %w", err)
	}
	partitions := fs.Int("partitions", defParts, "partition `count` of auto-created topics and of CreateTopics asking for the default (env DEVKAFKA_PARTITIONS)")
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("DEVKAFKA_LOG_LEVEL", "info"))); err != nil {
		return embedkafka.Config{}, 0, fmt.Errorf("DEVKAFKA_LOG_LEVEL: %w", err)
	}
	fs.TextVar(&level, "log-level", level, "log `level`: debug (every request), info, warn, error (env DEVKAFKA_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return embedkafka.Config{}, 0, err
	}
	if fs.NArg() > 0 {
		return embedkafka.Config{}, 0, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return embedkafka.Config{
		Addr:           *addr,
		AdvertisedHost: *advertised,
		DataDir:        *dataDir,
		Partitions:     *partitions,
	}, level, nil
}
