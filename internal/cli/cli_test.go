package cli

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// The flag wins over the variables, an older name over the KGRPC_ one, and
// the table's default applies when none is set; values parse by the type
// of the flag, and a variable that does not parse is an error naming it.
func TestParse(t *testing.T) {
	type values struct {
		addr    string
		n       int
		d       time.Duration
		on, old bool
	}
	table := func(v *values) []Flag {
		return []Flag{
			Flag{Name: "listen-addr", Value: &v.addr, Default: ":1"}.WithAlias("OLD_"),
			{Name: "count", Value: &v.n, Default: "3"},
			{Name: "wait", Value: &v.d, Default: "2s"},
			{Name: "on", Value: &v.on, Default: "false"},
			Flag{Name: "no-thing", Value: &v.old, Default: "false"}.WithAlias("OLD_"),
		}
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    values
		wantErr string
	}{
		{name: "defaults", want: values{addr: ":1", n: 3, d: 2 * time.Second}},
		{name: "KGRPC_ variables", env: map[string]string{"KGRPC_LISTEN_ADDR": ":2", "KGRPC_COUNT": "4", "KGRPC_WAIT": "1m", "KGRPC_ON": "true"},
			want: values{addr: ":2", n: 4, d: time.Minute, on: true}},
		{name: "the older name wins", env: map[string]string{"KGRPC_LISTEN_ADDR": ":2", "OLD_LISTEN_ADDR": ":3"}, want: values{addr: ":3", n: 3, d: 2 * time.Second}},
		{name: "the flag wins", args: []string{"--listen-addr", ":4", "--on=false"}, env: map[string]string{"OLD_LISTEN_ADDR": ":3", "KGRPC_ON": "true"},
			want: values{addr: ":4", n: 3, d: 2 * time.Second}},
		{name: "an older boolean set to anything", env: map[string]string{"OLD_NO_THING": "0"}, want: values{addr: ":1", n: 3, d: 2 * time.Second, old: true}},
		{name: "bad integer", env: map[string]string{"KGRPC_COUNT": "many"}, wantErr: `KGRPC_COUNT="many": not an integer`},
		{name: "bad duration", env: map[string]string{"KGRPC_WAIT": "30"}, wantErr: `KGRPC_WAIT="30"`},
		{name: "bad boolean", env: map[string]string{"KGRPC_ON": "yes"}, wantErr: `KGRPC_ON="yes": not a boolean`},
		{name: "bad flag", args: []string{"--count", "x"}, wantErr: `invalid value "x"`},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v values
			var out bytes.Buffer
			err := Parse("unit", table(&v), tt.args, MapLookup(tt.env), &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+out.String(), tt.wantErr) {
					t.Fatalf("err = %v (output %q), want one saying %s", err, out.String(), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v != tt.want {
				t.Errorf("got %+v, want %+v", v, tt.want)
			}
		})
	}
}

// A secret taken from a variable is used, but --help shows the variable's
// name instead of its value; -h is flag.ErrHelp.
func TestSecretHelp(t *testing.T) {
	var pw, user string
	flags := []Flag{{Name: "password", Value: &pw, Secret: true}, {Name: "user", Value: &user}}
	var out bytes.Buffer
	env := MapLookup(map[string]string{"KGRPC_PASSWORD": "hunter2", "KGRPC_USER": "ada"})
	if err := Parse("unit", flags, []string{"-h"}, env, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if help := out.String(); strings.Contains(help, "hunter2") || !strings.Contains(help, "$KGRPC_PASSWORD") || !strings.Contains(help, `"ada"`) {
		t.Fatalf("help:\n%s", help)
	}
	if err := Parse("unit", flags, nil, env, &out); err != nil || pw != "hunter2" {
		t.Fatalf("password %q, %v", pw, err)
	}
}

// NonEmpty treats a variable set to "" as unset.
func TestNonEmpty(t *testing.T) {
	env := NonEmpty(MapLookup(map[string]string{"A": "", "B": "b"}))
	if _, ok := env("A"); ok {
		t.Error(`A="" counts as set`)
	}
	if v, ok := env("B"); !ok || v != "b" {
		t.Errorf("B = %q, %v", v, ok)
	}
}

// NewLogger refuses unknown levels and formats.
func TestNewLogger(t *testing.T) {
	var out bytes.Buffer
	l, err := NewLogger("warn", "json", &out)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown")
	if s := out.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Errorf("log output %q", s)
	}
	for _, bad := range [][2]string{{"loud", "json"}, {"info", "xml"}} {
		if _, err := NewLogger(bad[0], bad[1], &out); err == nil {
			t.Errorf("NewLogger(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
