package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kgrpc/platform/kafkatransport/trust"
)

// init makes every unit's key and the keyring, once; rotate adds a newer
// key that the keyring lists first; retire removes an old one but never a
// unit's last; bad usage is errUsage.
func TestKeysLifecycle(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	if err := run([]string{"init", "--dir", dir}, &out, now); err != nil {
		t.Fatal(err)
	}
	ring, err := trust.LoadKeyring(filepath.Join(dir, "keyring.json"))
	if err != nil || strings.Join(ring.Units(), ",") != "gateway,ordersvc,productsvc,usersvc" {
		t.Fatalf("keyring units %v, %v", ring.Units(), err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "usersvc.key"))
	if err := run([]string{"init", "--dir", dir}, &out, now); err != nil { // again: nothing changes
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "usersvc.key")); !bytes.Equal(before, after) {
		t.Fatal("a second init replaced a key")
	}
	old, _ := trust.LoadUnitKey(filepath.Join(dir, "usersvc.key"))

	if err := run([]string{"rotate", "--dir", dir, "--unit", "usersvc"}, &out, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, err := trust.LoadUnitKey(filepath.Join(dir, "usersvc.key"))
	if err != nil || len(u.Keys) != 2 || u.Keys[1].ID != old.Current().ID {
		t.Fatalf("after rotate: %+v, %v", u, err)
	}
	ring, _ = trust.LoadKeyring(filepath.Join(dir, "keyring.json"))
	if ks := ring.Keys("usersvc"); len(ks) != 2 || ks[0].ID != u.Current().ID {
		t.Fatalf("keyring after rotate: %v", ks)
	}
	if _, err := trust.NewGuard(u, ring, trust.Policy{}); err != nil {
		t.Fatal(err)
	}

	if err := run([]string{"retire", "--dir", dir, "--unit", "usersvc", "--kid", old.Current().ID}, &out, now); err != nil {
		t.Fatal(err)
	}
	ring, _ = trust.LoadKeyring(filepath.Join(dir, "keyring.json"))
	if ks := ring.Keys("usersvc"); len(ks) != 1 || ks[0].ID != u.Current().ID {
		t.Fatalf("keyring after retire: %v", ks)
	}
	if err := run([]string{"retire", "--dir", dir, "--unit", "usersvc", "--kid", u.Current().ID}, &out, now); err == nil {
		t.Fatal("retired a unit's last key")
	}
	out.Reset()
	if err := run([]string{"list", "--dir", dir}, &out, now); err != nil || strings.Count(out.String(), "\n") != 4 {
		t.Fatalf("list: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{nil, {"frobnicate"}, {"rotate", "--dir", dir}, {"init", "--bogus"}, {"list", "extra"},
		{"rotate", "--dir", dir, "--unit", "../etc"}, {"init", "--dir", dir, "--units", "Gate Way"}} {
		if err := run(args, &out, now); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

// --help prints the commands and the flags and is not an error.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		var out strings.Builder
		if err := run([]string{arg}, &out, time.Now()); err != nil {
			t.Fatalf("kgrpc-keys %s = %v", arg, err)
		}
		for _, want := range []string{"kgrpc-keys rotate --dir keys --unit usersvc", "-kid", "-units"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("kgrpc-keys %s printed no %q:\n%s", arg, want, out.String())
			}
		}
	}
}
