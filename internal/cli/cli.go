package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvPrefix is the prefix of every environment variable the binaries read.
const EnvPrefix = "KGRPC_"

// Flag is one row of a binary's flag table.
type Flag struct {
	// Name is the flag's name without dashes, such as "http-addr".
	Name string
	// Value points at where the parsed value goes: a *string, *int, *bool
	// or *time.Duration.
	Value any
	// Default is the value when neither the flag nor a variable is set, in
	// the flag's own syntax ("10s", "-1", "true").
	Default string
	// Usage is the --help text; the variable names are appended to it.
	Usage string
	// Secret keeps a value taken from the environment out of --help, which
	// shows "$VARIABLE" instead (passwords, keys, DSNs).
	Secret bool
	// Aliases are older variable names still read, documented for
	// compatibility (PLATFORM_DATA_DIR, ...); see WithAlias.
	Aliases []string
}

// Env is the flag's environment variable: KGRPC_ and its name in upper
// case, dashes as underscores (--http-addr reads KGRPC_HTTP_ADDR).
func (f Flag) Env() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// WithDefault returns a copy of f with another default, for a binary whose
// default differs from the table's (the API port of the gateway, say).
func (f Flag) WithDefault(def string) Flag {
	f.Default = def
	return f
}

// WithAlias returns a copy of f that also reads the variable prefix and its
// name in upper case (PLATFORM_ for PLATFORM_DATA_DIR): the older name of a
// binary, kept working. When both are set the older name wins, since it was
// set for this binary alone; a boolean older name set to anything (even
// "false", as it was documented) means true.
func (f Flag) WithAlias(prefix string) Flag {
	f.Aliases = append(slices.Clip(f.Aliases), prefix+strings.TrimPrefix(f.Env(), EnvPrefix))
	return f
}

// Lookup reads an environment variable: os.LookupEnv, or a map in tests.
type Lookup func(name string) (string, bool)

// NonEmpty returns a Lookup that treats a variable set to "" as unset.
func NonEmpty(env Lookup) Lookup {
	return func(name string) (string, bool) {
		v, ok := env(name)
		return v, ok && v != ""
	}
}

// MapLookup returns a Lookup over m.
func MapLookup(m map[string]string) Lookup {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// Parse defines flags on a new flag set named name, with each default taken
// from the flag's variable (or an alias) when set, and parses args. A
// variable whose value does not parse is an error naming it, as a bad flag
// is. Positional arguments are refused. It returns flag.ErrHelp for -h.
func Parse(name string, flags []Flag, args []string, env Lookup, output io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	for _, f := range flags {
		if err := define(fs, f, env); err != nil {
			fmt.Fprintf(output, "%s: %v\n", name, err)
			return err
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintf(output, "%s: %v\n", name, err)
		return err
	}
	return nil
}

// define adds f to fs with its default from the environment.
func define(fs *flag.FlagSet, f Flag, env Lookup) (err error) {
	def, from := f.Default, ""
	// A binary's own older name wins over the KGRPC_ one, so that a setting
	// made for this binary is not overridden by one exported for the others.
	names := append(slices.Clip(f.Aliases), f.Env())
	for _, v := range names {
		if s, ok := env(v); ok {
			def, from = s, v
			break
		}
	}
	usage := f.Usage + " (" + strings.Join(append([]string{f.Env()}, f.Aliases...), ", or ") + ")"
	bad := func(kind string) error {
		if from == "" {
			return fmt.Errorf("--%s: default %q is not %s", f.Name, def, kind) // a table bug
		}
		return fmt.Errorf("%s=%q: not %s", from, def, kind)
	}
	switch p := f.Value.(type) {
	case *string:
		fs.StringVar(p, f.Name, def, usage)
	case *int:
		n, err := strconv.Atoi(def)
		if err != nil {
			return bad("an integer")
		}
		fs.IntVar(p, f.Name, n, usage)
	case *time.Duration:
		d, err := time.ParseDuration(def)
		if err != nil {
			return bad("a duration such as 30s")
		}
		fs.DurationVar(p, f.Name, d, usage)
	case *bool:
		var b bool
		if from != "" && from != f.Env() {
			b = def != "" // an older name: documented as "set to anything means true"
		} else if b, err = strconv.ParseBool(def); err != nil {
			return bad("a boolean (true or false)")
		}
		fs.BoolVar(p, f.Name, b, usage)
	default:
		return fmt.Errorf("--%s: unsupported value type %T", f.Name, f.Value)
	}
	if f.Secret && from != "" && def != "" {
		fs.Lookup(f.Name).DefValue = "$" + from
	}
	return nil
}

// NewLogger returns the JSON or text logger at level that --log-level and
// --log-format describe, writing to w.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// Main is a binary's main function: it parses os.Args and the environment
// (read through env, usually os.LookupEnv) against flags, then runs run
// until SIGINT or SIGTERM. A bad flag or
// variable exits with code 2 (-h with 0), a failure of run with 1.
func Main(name string, flags []Flag, env Lookup, run func(ctx context.Context) error) {
	if err := Parse(name, flags, os.Args[1:], env, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		var usage UsageError
		var logged loggedError
		switch {
		case errors.As(err, &usage):
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(2)
		case !errors.As(err, &logged):
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		os.Exit(1)
	}
}

// Logged marks an error that run has already logged, so that Main exits
// with code 1 without printing it again.
func Logged(err error) error { return loggedError{err} }

type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// UsageError is a setting that is missing or invalid: Main exits with code
// 2 for it, as for a bad flag.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }

func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}
