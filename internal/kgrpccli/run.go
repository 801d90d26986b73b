// Package kgrpccli is cmd/kgrpc: grpcurl for services served over Kafka
// (see the command's documentation). Run is the command, callable from
// tests.
package kgrpccli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Run runs kgrpc with args (without the program name), printing results
// to out. An error of a bad command line is a UsageError.
func Run(ctx context.Context, args []string, out io.Writer) error { return run(ctx, args, out) }

// UsageError is an error in how kgrpc was called.
type UsageError struct{ msg string }

func (e UsageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

const usage = `usage: kgrpc [flags] list
       kgrpc [flags] describe SYMBOL
       kgrpc [flags] call SERVICE/METHOD [-d JSON] [-H key:value]...
       kgrpc [flags] tail TOPIC [--from-beginning] [-n N]
       kgrpc [flags] dlq list TOPIC [--partition P]
       kgrpc [flags] dlq replay TOPIC [--partition P [--offset N]]`

// options are kgrpc's global flags.
type options struct {
	brokers, prefix, unitKey, keyring, dataDir string
	timeout                                    time.Duration
}

// envOr returns the first of the environment variables names that is
// set and not empty, else def.
func envOr(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kgrpc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.brokers, "brokers", envOr("127.0.0.1:9092", "KGRPC_BROKERS", "KAFKA_BROKERS"), "Kafka bootstrap servers (KGRPC_BROKERS, or KAFKA_BROKERS)")
	fs.StringVar(&o.prefix, "topic-prefix", envOr("", "KGRPC_TOPIC_PREFIX"), "the topic prefix of the services, as the units' --topic-prefix (KGRPC_TOPIC_PREFIX)")
	fs.StringVar(&o.unitKey, "unit-key", envOr("", "KGRPC_UNIT_KEY"), "the key of the unit kgrpc calls as, when records are sealed (kgrpc-keys) (KGRPC_UNIT_KEY)")
	fs.StringVar(&o.keyring, "keyring", envOr("", "KGRPC_KEYRING"), "the keyring, with --unit-key (KGRPC_KEYRING)")
	fs.StringVar(&o.dataDir, "data-dir", envOr("", "KGRPC_DATA_DIR"), "a running cmd/platform's data directory: its broker, and the gateway's key (KGRPC_DATA_DIR)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Second, "how long a list, describe or call may take")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return help(fs, out)
		}
		return usagef("%v\n%s", err, usage)
	}
	if fs.NArg() > 0 && fs.Arg(0) == "help" {
		return help(fs, out)
	}
	if err := o.fromDataDir(fs); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		return usagef("%s", usage)
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return usagef("list takes no arguments")
		}
		return list(ctx, o, out)
	case "describe":
		if len(args) != 2 {
			return usagef("usage: kgrpc describe SYMBOL")
		}
		return describe(ctx, o, args[1], out)
	case "call":
		return call(ctx, o, args[1:], out)
	case "tail":
		return tail(ctx, o, args[1:], out)
	case "dlq":
		return dlq(ctx, o, args[1:], out)
	}
	return usagef("unknown command %q\n%s", args[0], usage)
}

// help prints the usage and the global flags to out.
func help(fs *flag.FlagSet, out io.Writer) error {
	fmt.Fprintf(out, "%s\n\nflags:\n", usage)
	fs.SetOutput(out)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprintln(out, "\nWith --data-dir of a running cmd/platform, kgrpc finds its broker and calls as its gateway.")
	return nil
}

// fromDataDir fills the broker and the keys from a cmd/platform data
// directory, where flags did not set them.
func (o *options) fromDataDir(fs *flag.FlagSet) error {
	if o.dataDir == "" {
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// A KGRPC_ variable sets its flag as the command line does (KAFKA_BROKERS
	// stays a default: a shell may export it for another cluster).
	for name, env := range map[string]string{"brokers": "KGRPC_BROKERS", "unit-key": "KGRPC_UNIT_KEY", "keyring": "KGRPC_KEYRING"} {
		if os.Getenv(env) != "" {
			set[name] = true
		}
	}
	if !set["brokers"] {
		b, err := os.ReadFile(filepath.Join(o.dataDir, "broker-addr"))
		if err != nil {
			return fmt.Errorf("--data-dir: the platform's broker address: %w (is cmd/platform running on %s with its embedded broker?)", err, o.dataDir)
		}
		o.brokers = strings.TrimSpace(string(b))
	}
	if !set["unit-key"] {
		o.unitKey = filepath.Join(o.dataDir, "keys", "gateway.key")
	}
	if !set["keyring"] {
		o.keyring = filepath.Join(o.dataDir, "keys", "keyring.json")
	}
	return nil
}
