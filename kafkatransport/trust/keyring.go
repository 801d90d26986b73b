package trust

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// PublicKey is the public half of a unit's Key.
type PublicKey struct {
	// Unit owns the key.
	Unit string
	// ID is the key id.
	ID string
	// Created is when the key was generated.
	Created time.Time
	// Verify checks the key's signatures.
	Verify ed25519.PublicKey
	// DH agrees sealing keys with the key's X25519 half.
	DH *ecdh.PublicKey
}

// Keyring holds the public keys of every unit: what each unit needs to
// check the others. Its file is a JSON Web Key Set (RFC 7517) with two
// entries per key, sharing its "kid": the Ed25519 key ("use": "sig", "alg":
// "EdDSA") and the X25519 key ("use": "enc", "alg": "ECDH-ES"), each with
// the extra members "kgrpc_unit" (the owning unit) and "kgrpc_created".
type Keyring struct {
	keys []PublicKey // by unit, then newest first
}

// jwk is one JSON Web Key of an OKP (RFC 8037) key.
type jwk struct {
	Kty     string     `json:"kty"`
	Crv     string     `json:"crv"`
	X       string     `json:"x"`
	Kid     string     `json:"kid"`
	Use     string     `json:"use,omitempty"`
	Alg     string     `json:"alg,omitempty"`
	Unit    string     `json:"kgrpc_unit,omitempty"`
	Created *time.Time `json:"kgrpc_created,omitempty"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// LoadKeyring reads a keyring file (see Keyring). It refuses a file that
// others than its owner may write: whoever can add a key to it can act as
// any unit.
func LoadKeyring(path string) (*Keyring, error) {
	body, err := readFileMode(path, 0o022, "lets others than its owner write it: chmod 644 it")
	if err != nil {
		return nil, fmt.Errorf("trust: keyring: %w", err)
	}
	k, err := ParseKeyring(body)
	if err != nil {
		return nil, fmt.Errorf("trust: keyring %s: %w", path, err)
	}
	return k, nil
}

// ParseKeyring parses the JSON of a keyring file.
func ParseKeyring(body []byte) (*Keyring, error) {
	var set jwkSet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	byID := map[string]*PublicKey{}
	var order []string
	for _, j := range set.Keys {
		if j.Kty != "OKP" || validKeyID(j.Kid) != nil {
			return nil, fmt.Errorf("key %q: want an OKP key with a kid of letters, digits, '.', '_' or '-'", j.Kid)
		}
		if err := ValidUnit(j.Unit); err != nil {
			return nil, fmt.Errorf("key %q: %w", j.Kid, err)
		}
		x, err := b64.DecodeString(j.X)
		if err != nil {
			return nil, fmt.Errorf("key %q: malformed x: %w", j.Kid, err)
		}
		pk := byID[j.Kid]
		if pk == nil {
			pk = &PublicKey{Unit: j.Unit, ID: j.Kid}
			byID[j.Kid] = pk
			order = append(order, j.Kid)
		}
		if pk.Unit != j.Unit {
			return nil, fmt.Errorf("key %q: claimed by units %q and %q", j.Kid, pk.Unit, j.Unit)
		}
		if j.Created != nil {
			pk.Created = *j.Created
		}
		switch j.Crv {
		case "Ed25519":
			if pk.Verify != nil {
				return nil, fmt.Errorf("key %q: two Ed25519 halves", j.Kid)
			}
			if len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("key %q: Ed25519 key of %d bytes", j.Kid, len(x))
			}
			pk.Verify = ed25519.PublicKey(x)
		case "X25519":
			if pk.DH != nil {
				return nil, fmt.Errorf("key %q: two X25519 halves", j.Kid)
			}
			if pk.DH, err = ecdh.X25519().NewPublicKey(x); err != nil {
				return nil, fmt.Errorf("key %q: %w", j.Kid, err)
			}
		default:
			return nil, fmt.Errorf("key %q: curve %q: want Ed25519 or X25519", j.Kid, j.Crv)
		}
	}
	r := &Keyring{}
	for _, id := range order {
		pk := byID[id]
		if pk.Verify == nil || pk.DH == nil {
			return nil, fmt.Errorf("key %q: want both its Ed25519 and its X25519 half", id)
		}
		r.keys = append(r.keys, *pk)
	}
	r.sort()
	return r, nil
}

// sort orders the keys by unit, then newest first.
func (r *Keyring) sort() {
	slices.SortStableFunc(r.keys, func(a, b PublicKey) int {
		if c := compareStrings(a.Unit, b.Unit); c != 0 {
			return c
		}
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return compareStrings(b.ID, a.ID)
	})
}

// Set replaces the public keys of u's unit with those of u's keys.
func (r *Keyring) Set(u *UnitKey) {
	r.keys = slices.DeleteFunc(r.keys, func(k PublicKey) bool { return k.Unit == u.Unit })
	for _, k := range u.Keys {
		r.keys = append(r.keys, k.Public(u.Unit))
	}
	r.sort()
}

// Units returns the names of the units that have keys, sorted.
func (r *Keyring) Units() []string {
	var out []string
	for _, k := range r.keys {
		if len(out) == 0 || out[len(out)-1] != k.Unit {
			out = append(out, k.Unit)
		}
	}
	return out
}

// Keys returns the public keys of unit, newest first.
func (r *Keyring) Keys(unit string) []PublicKey {
	var out []PublicKey
	for _, k := range r.keys {
		if k.Unit == unit {
			out = append(out, k)
		}
	}
	return out
}

// Key returns the public key with id, if the keyring has it.
func (r *Keyring) Key(id string) (PublicKey, bool) {
	for _, k := range r.keys {
		if k.ID == id {
			return k, true
		}
	}
	return PublicKey{}, false
}

// oldest returns the oldest key of unit, the one every instance of the
// unit holds during a rotation, which peers seal to.
func (r *Keyring) oldest(unit string) (PublicKey, bool) {
	ks := r.Keys(unit)
	if len(ks) == 0 {
		return PublicKey{}, false
	}
	return ks[len(ks)-1], true
}

// Marshal returns the keyring file's JSON.
func (r *Keyring) Marshal() ([]byte, error) {
	set := jwkSet{Keys: []jwk{}}
	for _, k := range r.keys {
		created := k.Created
		set.Keys = append(set.Keys,
			jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k.Verify), Kid: k.ID, Use: "sig", Alg: "EdDSA", Unit: k.Unit, Created: &created},
			jwk{Kty: "OKP", Crv: "X25519", X: b64.EncodeToString(k.DH.Bytes()), Kid: k.ID, Use: "enc", Alg: "ECDH-ES", Unit: k.Unit, Created: &created})
	}
	body, err := json.MarshalIndent(set, "", "  ")
	return append(body, '\n'), err
}

// Save writes the keyring file to path, readable by all: it holds public
// keys only.
func (r *Keyring) Save(path string) error {
	body, err := r.Marshal()
	if err != nil {
		return err
	}
	return writeAtomic(path, body, 0o644)
}

// JWKS returns the JSON Web Key Set of unit's signing keys, with the
// standard members only: what /.well-known/jwks.json serves for the unit
// that signs user tokens.
func (r *Keyring) JWKS(unit string) ([]byte, error) {
	set := jwkSet{Keys: []jwk{}}
	for _, k := range r.Keys(unit) {
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k.Verify), Kid: k.ID, Use: "sig", Alg: "EdDSA"})
	}
	return json.Marshal(set)
}

// Generate makes a key for each of units and the keyring of their public
// keys: what a test, or a process that runs every unit itself, needs.
func Generate(now time.Time, units ...string) (*Keyring, map[string]*UnitKey, error) {
	ring := &Keyring{}
	keys := make(map[string]*UnitKey, len(units))
	for _, u := range units {
		k, err := GenerateKey(u, now)
		if err != nil {
			return nil, nil, err
		}
		keys[u] = &UnitKey{Unit: u, Keys: []Key{k}}
		ring.Set(keys[u])
	}
	return ring, keys, nil
}

// KeyringFile is the keyring's file name in a key directory, beside one
// UnitKeyPath file per unit.
const KeyringFile = "keyring.json"

// UnitKeyPath returns the path of unit's key file in key directory dir.
func UnitKeyPath(dir, unit string) string { return filepath.Join(dir, unit+".key") }

// EnsureDir returns the keyring and the keys of units kept in key
// directory dir, making the directory, the unit keys that are missing
// (calling made, when set, for each) and keeping the keyring in step with
// the unit keys. Keys that exist are left as they are.
func EnsureDir(dir string, units []string, now time.Time, made func(unit string, k Key, path string)) (*Keyring, map[string]*UnitKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("trust: key directory: %w", err)
	}
	ringPath := filepath.Join(dir, KeyringFile)
	ring, err := LoadKeyring(ringPath)
	if errors.Is(err, fs.ErrNotExist) {
		ring, err = &Keyring{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	keys := make(map[string]*UnitKey, len(units))
	changed := false
	for _, unit := range units {
		if err := ValidUnit(unit); err != nil {
			return nil, nil, err
		}
		path := UnitKeyPath(dir, unit)
		k, err := LoadUnitKey(path)
		if errors.Is(err, fs.ErrNotExist) {
			key, gerr := GenerateKey(unit, now)
			if gerr != nil {
				return nil, nil, gerr
			}
			k = &UnitKey{Unit: unit, Keys: []Key{key}}
			if err = k.Save(path); err == nil && made != nil {
				made(unit, key, path)
			}
		}
		if err != nil {
			return nil, nil, err
		}
		if pk, ok := ring.Key(k.Current().ID); !ok || pk.Unit != unit || len(ring.Keys(unit)) != len(k.Keys) {
			ring.Set(k)
			changed = true
		}
		keys[unit] = k
	}
	if changed {
		if err := ring.Save(ringPath); err != nil {
			return nil, nil, err
		}
	}
	return ring, keys, nil
}
