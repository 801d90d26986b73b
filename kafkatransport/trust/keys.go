package trust

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// Key is one generation of a unit's keys: an Ed25519 key that signs (user
// tokens, events) and an X25519 key that agrees the sealing keys of calls
// with other units. Both halves share the key id.
type Key struct {
	// ID is the key id ("kid"): "<unit>-<yyyymmdd>-<8 hex>".
	ID string
	// Created is when the key was generated.
	Created time.Time

	sign ed25519.PrivateKey
	dh   *ecdh.PrivateKey
}

// Signer returns the key's Ed25519 private key, for the signatures of user
// tokens.
func (k Key) Signer() ed25519.PrivateKey { return k.sign }

// Public returns the public half of k, owned by unit.
func (k Key) Public(unit string) PublicKey {
	return PublicKey{Unit: unit, ID: k.ID, Created: k.Created, Verify: k.sign.Public().(ed25519.PublicKey), DH: k.dh.PublicKey()}
}

// UnitKey is a unit's private key file: the unit's name and its keys. The
// newest key signs and seals; older ones still open what was sealed to
// them until they are retired.
type UnitKey struct {
	// Unit is the unit's name, as the Policy knows it.
	Unit string
	// Keys are the unit's keys, newest first.
	Keys []Key

	// secret is the unit's own 32 random bytes, kept across rotations,
	// from which Secret derives; nil until first saved.
	secret []byte
}

// Current returns the newest key, the one that signs and seals.
func (u *UnitKey) Current() Key { return u.Keys[0] }

// key returns the key with id, if the unit has it.
func (u *UnitKey) key(id string) (Key, bool) {
	for _, k := range u.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// unitName is what a unit's name may be: it appears in key ids and record
// headers. keyID is what a key id may be.
var (
	unitName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	keyID    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// validKeyID reports why id cannot be a key id, or nil: it goes in record
// headers between spaces and into key derivations.
func validKeyID(id string) error {
	if !keyID.MatchString(id) {
		return fmt.Errorf("key id %q: want 1 to 100 letters, digits, '.', '_' or '-'", id)
	}
	return nil
}

// ValidUnit reports why unit cannot name a unit, or nil.
func ValidUnit(unit string) error {
	if !unitName.MatchString(unit) {
		return fmt.Errorf("trust: unit name %q: want 1 to 40 lower-case letters, digits or _, starting with a letter", unit)
	}
	return nil
}

// GenerateKey returns a new key for unit.
func GenerateKey(unit string, now time.Time) (Key, error) {
	if err := ValidUnit(unit); err != nil {
		return Key{}, err
	}
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	dh, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	now = now.UTC().Truncate(time.Second)
	return Key{ID: unit + "-" + now.Format("20060102") + "-" + hex.EncodeToString(id[:]), Created: now, sign: sign, dh: dh}, nil
}

// unitKeyFile is the JSON of a unit key file.
type unitKeyFile struct {
	Unit   string       `json:"unit"`
	Secret string       `json:"secret,omitempty"` // base64url, 32 bytes
	Keys   []keyEntries `json:"keys"`
}

type keyEntries struct {
	ID      string    `json:"kid"`
	Created time.Time `json:"created"`
	Ed25519 string    `json:"ed25519_seed"` // base64url, 32 bytes
	X25519  string    `json:"x25519"`       // base64url, 32 bytes
}

var b64 = base64.RawURLEncoding

// LoadUnitKey reads a unit key file (see Save). It refuses a file that any
// user may read, or that its group may write: mode 0600 or 0400, or 0640 and
// 0440 for a group of the unit's own (what Kubernetes Secret volumes with
// fsGroup give), are accepted.
func LoadUnitKey(path string) (*UnitKey, error) {
	body, err := readFileMode(path, 0o027, "lets others than its owner and group read it, or its group write it: chmod 600 it")
	if err != nil {
		return nil, fmt.Errorf("trust: unit key: %w", err)
	}
	u, err := parseUnitKey(body)
	if err != nil {
		return nil, fmt.Errorf("trust: unit key %s: %w", path, err)
	}
	return u, nil
}

func parseUnitKey(body []byte) (u *UnitKey, err error) {
	var f unitKeyFile
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("not a unit key file: %w", err)
	}
	if err := ValidUnit(f.Unit); err != nil {
		return nil, err
	}
	if len(f.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	u = &UnitKey{Unit: f.Unit}
	if f.Secret != "" {
		if u.secret, err = b64.DecodeString(f.Secret); err != nil || len(u.secret) != 32 {
			return nil, errors.New("malformed secret")
		}
	}
	seen := map[string]bool{}
	for _, e := range f.Keys {
		if err := validKeyID(e.ID); err != nil || seen[e.ID] {
			return nil, fmt.Errorf("key %q: malformed or repeated id", e.ID)
		}
		seen[e.ID] = true
		seed, err1 := b64.DecodeString(e.Ed25519)
		dh, err2 := b64.DecodeString(e.X25519)
		if err := errors.Join(err1, err2); err != nil || len(seed) != ed25519.SeedSize || e.ID == "" {
			return nil, fmt.Errorf("key %q: malformed", e.ID)
		}
		priv, err := ecdh.X25519().NewPrivateKey(dh)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", e.ID, err)
		}
		u.Keys = append(u.Keys, Key{ID: e.ID, Created: e.Created, sign: ed25519.NewKeyFromSeed(seed), dh: priv})
	}
	sortNewestFirst(u.Keys)
	return u, nil
}

// sortNewestFirst orders keys newest first, by creation then id.
func sortNewestFirst(keys []Key) {
	slices.SortStableFunc(keys, func(a, b Key) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return compareStrings(b.ID, a.ID)
	})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Save writes u to path, readable by its owner only, replacing the file
// atomically.
func (u *UnitKey) Save(path string) error {
	if u.secret == nil {
		u.secret = make([]byte, 32)
		_, _ = rand.Read(u.secret)
	}
	f := unitKeyFile{Unit: u.Unit, Secret: b64.EncodeToString(u.secret)}
	for _, k := range u.Keys {
		f.Keys = append(f.Keys, keyEntries{ID: k.ID, Created: k.Created, Ed25519: b64.EncodeToString(k.sign.Seed()), X25519: b64.EncodeToString(k.dh.Bytes())})
	}
	body, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(body, '\n'), 0o600)
}

// readFileMode reads the file at path, refusing it when its mode has any
// of the bits of bad, with why in the error. The mode is that of the file
// opened, not of a name that may change in between.
func readFileMode(path string, bad os.FileMode, why string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&bad != 0 {
		return nil, fmt.Errorf("%s: mode %v %s", path, fi.Mode().Perm(), why)
	}
	return io.ReadAll(f)
}

// writeAtomic writes body to path through a temporary file in its
// directory.
func writeAtomic(path string, body []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("trust: %w", err)
	}
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	return nil
}

// Secret returns a 32-byte secret of the unit for purpose label, derived
// (HKDF-SHA256) from the unit's own random secret in its key file, which
// rotation keeps (a file without one, never saved, derives from its oldest
// key): for example the key of its idempotency fingerprints, the same in
// every instance. Units never share it.
func (u *UnitKey) Secret(label string) []byte {
	base := u.secret
	if base == nil {
		base = u.Keys[len(u.Keys)-1].sign.Seed()
	}
	b, err := hkdf.Key(sha256.New, base, []byte("kgrpc-unit-secret-v1"), u.Unit+"\x00"+label, 32)
	if err != nil {
		panic("trust: hkdf: " + err.Error()) // only for a length sha256 cannot give
	}
	return b
}
