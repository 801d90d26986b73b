// Command kgrpc-keys makes and rotates the units' keys (see
// kafkatransport/trust): one private key file per unit, "<unit>.key" (mode
// 0600), and the keyring of every unit's public keys, "keyring.json", in one
// directory.
//
//	kgrpc-keys init   --dir keys [--units gateway,usersvc,productsvc,ordersvc]
//	kgrpc-keys rotate --dir keys --unit usersvc
//	kgrpc-keys retire --dir keys --unit usersvc --kid usersvc-20261130-0a1b2c3d
//	kgrpc-keys list   --dir keys
//
// init makes the keys that are missing and keeps the keyring in step;
// rotate adds a new, newest key to a unit; retire removes one that is not
// its last. After rotate or retire, give every unit the new keyring first,
// then the rotated unit its new key file (kafkatransport/trust, "Rotation").
// Each binary takes its key with --unit-key and the keyring with --keyring.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "kgrpc-keys:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: kgrpc-keys init|rotate|retire|list --dir DIR [--units a,b] [--unit U] [--kid KID]")

// help is what kgrpc-keys --help prints before its flags.
const help = `kgrpc-keys makes and rotates the units' keys: one private key file per
unit, <unit>.key (mode 0600), and the keyring of every unit's public keys,
keyring.json, in one directory.

  kgrpc-keys init   --dir keys [--units gateway,usersvc,productsvc,ordersvc]
  kgrpc-keys rotate --dir keys --unit usersvc
  kgrpc-keys retire --dir keys --unit usersvc --kid usersvc-20261130-0a1b2c3d
  kgrpc-keys list   --dir keys

After rotate or retire, give every unit the new keyring first, then the
rotated unit its new key file.

flags:
`

func run(args []string, out io.Writer, now time.Time) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd := args[0]
	fs := flag.NewFlagSet("kgrpc-keys "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", "keys", "key directory")
	units := fs.String("units", strings.Join(app.Units, ","), "init: the units to make keys for")
	unit := fs.String("unit", "", "rotate, retire: the unit")
	kid := fs.String("kid", "", "retire: the key id to remove")
	if cmd == "help" || cmd == "-h" || cmd == "--help" || cmd == "-help" {
		fmt.Fprint(out, help)
		fs.SetOutput(out)
		fs.PrintDefaults()
		return nil
	}
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected %q", errUsage, fs.Arg(0))
	}
	ringPath := filepath.Join(*dir, trust.KeyringFile)
	switch cmd {
	case "init":
		var list []string
		for u := range strings.SplitSeq(*units, ",") {
			if u = strings.TrimSpace(u); trust.ValidUnit(u) != nil {
				return fmt.Errorf("%w: %v", errUsage, trust.ValidUnit(u))
			}
			list = append(list, u)
		}
		ring, _, err := trust.EnsureDir(*dir, list, now, func(_ string, k trust.Key, path string) {
			fmt.Fprintf(out, "made %s (key %s)\n", path, k.ID)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s holds units %s\n", ringPath, strings.Join(ring.Units(), ", "))
		return nil
	case "rotate", "retire":
		if *unit == "" {
			return fmt.Errorf("%w: %s needs --unit", errUsage, cmd)
		}
		if err := trust.ValidUnit(*unit); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		path := trust.UnitKeyPath(*dir, *unit)
		k, err := trust.LoadUnitKey(path)
		if err != nil {
			return err
		}
		if k.Unit != *unit {
			return fmt.Errorf("%s holds the key of unit %s, not %s", path, k.Unit, *unit)
		}
		ring, err := loadRing(ringPath)
		if err != nil {
			return err
		}
		if cmd == "rotate" {
			key, err := trust.GenerateKey(*unit, now)
			if err != nil {
				return err
			}
			k.Keys = append([]trust.Key{key}, k.Keys...)
			fmt.Fprintf(out, "added key %s to %s: hand out %s to every unit first, then %s to %s\n", key.ID, path, ringPath, path, *unit)
		} else {
			i := slices.IndexFunc(k.Keys, func(x trust.Key) bool { return x.ID == *kid })
			switch {
			case i < 0:
				return fmt.Errorf("%s has no key %q", path, *kid)
			case len(k.Keys) == 1:
				return fmt.Errorf("%q is %s's only key: rotate first", *kid, *unit)
			}
			k.Keys = slices.Delete(k.Keys, i, i+1)
			fmt.Fprintf(out, "retired key %s of %s\n", *kid, *unit)
		}
		if err := k.Save(path); err != nil {
			return err
		}
		ring.Set(k)
		return saveRing(out, ring, ringPath)
	case "list":
		ring, err := trust.LoadKeyring(ringPath)
		if err != nil {
			return err
		}
		for _, u := range ring.Units() {
			for i, k := range ring.Keys(u) {
				role := ""
				if i == 0 {
					role = " (signs)"
				}
				fmt.Fprintf(out, "%-12s %s  created %s%s\n", u, k.ID, k.Created.Format(time.RFC3339), role)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// loadRing reads the keyring at path, or returns an empty one when there is
// none yet.
func loadRing(path string) (*trust.Keyring, error) {
	r, err := trust.LoadKeyring(path)
	if errors.Is(err, os.ErrNotExist) {
		return &trust.Keyring{}, nil
	}
	return r, err
}

func saveRing(out io.Writer, r *trust.Keyring, path string) error {
	if err := r.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (units %s)\n", path, strings.Join(r.Units(), ", "))
	return nil
}
