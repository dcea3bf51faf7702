package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"sync"
)

// Login is what a proplet's password proved.
type Login int

const (
	// LoginRefused: the password is no credential of the id.
	LoginRefused Login = iota
	// LoginSecret: the id's own secret.
	LoginSecret
	// LoginPending: a secret enrolled for the id that it has not logged in
	// with before; the broker confirms it (see Enroller).
	LoginPending
	// LoginJoin: the join token, for an id without a confirmed secret.
	LoginJoin
)

// Credentials decides whether a proplet may log in. id is the MQTT username
// (already checked with wire.ValidID), secret the MQTT password.
type Credentials interface {
	Check(id, secret string) Login
}

// Enroller gives a proplet that logged in with the join token its own
// secret, so the join token only enrolls. Without one (Config.Enroller
// nil) the join token stays a login of every id without an issued secret.
//
// An enrolled secret is pending until the proplet first logs in with it:
// until then the join token still logs the id in (and enrolls it again),
// so a proplet that crashed before it stored the secret is not locked
// out. The first login with the secret confirms it; from then on only
// that secret logs the id in.
type Enroller interface {
	// Enroll records a fresh pending secret for id, durably, replacing any
	// earlier pending one, and returns it.
	Enroll(id string) (string, error)
	// Confirm makes id's pending secret its only credential.
	Confirm(id string) error
}

// TokenCredentials accepts a shared join token for any proplet id, and
// per-proplet secrets issued by the manager. Once a secret is issued for an
// id, the join token no longer works for that id: otherwise anyone holding
// the join token could impersonate a proplet that was given its own
// credential, which defeats the point of issuing one.
//
// Secrets are kept as SHA-256 digests so that comparisons run in constant
// time regardless of the secret's length.
type TokenCredentials struct {
	mu      sync.RWMutex
	join    []byte // digest; nil disables the join token
	issued  map[string][]byte
	pending map[string][]byte // enrolled, not yet logged in with (see Enroller)
}

// NewTokenCredentials returns credentials accepting joinToken; an empty
// joinToken accepts issued secrets only.
func NewTokenCredentials(joinToken string) *TokenCredentials {
	c := &TokenCredentials{issued: make(map[string][]byte), pending: make(map[string][]byte)}
	if joinToken != "" {
		c.join = digest(joinToken)
	}
	return c
}

// Issue sets (or replaces) the secret of one proplet.
func (c *TokenCredentials) Issue(id, secret string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issued[id] = digest(secret)
	delete(c.pending, id)
}

// IssueDigest sets (or replaces) the secret of one proplet from its SHA-256
// digest, as a manager that persists only digests reloads them.
func (c *TokenCredentials) IssueDigest(id string, sum []byte) error {
	if len(sum) != sha256.Size {
		return errors.New("broker: credential digest is not SHA-256")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issued[id] = bytes.Clone(sum)
	delete(c.pending, id)
	return nil
}

// PendingDigest records an enrolled secret of id that is not confirmed yet
// (see Enroller), from its SHA-256 digest. It does not replace a confirmed
// secret: an enrolment never takes over an id.
func (c *TokenCredentials) PendingDigest(id string, sum []byte) error {
	if len(sum) != sha256.Size {
		return errors.New("broker: credential digest is not SHA-256")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.issued[id]; ok {
		return errors.New("broker: proplet already has a confirmed credential")
	}
	c.pending[id] = bytes.Clone(sum)
	return nil
}

// Confirm makes id's pending secret its confirmed one and reports whether
// there was one.
func (c *TokenCredentials) Confirm(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, ok := c.pending[id]
	if ok {
		c.issued[id] = sum
		delete(c.pending, id)
	}
	return ok
}

// Digest is the SHA-256 digest a secret is kept as (see IssueDigest).
func Digest(secret string) []byte { return digest(secret) }

// Revoke forgets a proplet's secret, confirmed or pending; the join token
// applies to it again.
func (c *TokenCredentials) Revoke(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.issued, id)
	delete(c.pending, id)
}

// Check implements Credentials.
func (c *TokenCredentials) Check(id, secret string) Login {
	if secret == "" {
		return LoginRefused
	}
	d := digest(secret)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if want, ok := c.issued[id]; ok {
		if subtle.ConstantTimeCompare(d, want) == 1 {
			return LoginSecret
		}
		return LoginRefused
	}
	if want, ok := c.pending[id]; ok && subtle.ConstantTimeCompare(d, want) == 1 {
		return LoginPending
	}
	if c.join != nil && subtle.ConstantTimeCompare(d, c.join) == 1 {
		return LoginJoin
	}
	return LoginRefused
}

// NewSecret returns a random 256-bit secret, hex encoded, suitable for a
// join token or a per-proplet credential.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func digest(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func secretEqual(got []byte, want string) bool {
	a := sha256.Sum256(got)
	b := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
