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

// Credentials decides whether a proplet may log in. id is the MQTT username
// (already checked with wire.ValidID), secret the MQTT password.
type Credentials interface {
	Check(id, secret string) bool
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
	mu     sync.RWMutex
	join   []byte // digest; nil disables the join token
	issued map[string][]byte
}

// NewTokenCredentials returns credentials accepting joinToken; an empty
// joinToken accepts issued secrets only.
func NewTokenCredentials(joinToken string) *TokenCredentials {
	c := &TokenCredentials{issued: make(map[string][]byte)}
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
	return nil
}

// Digest is the SHA-256 digest a secret is kept as (see IssueDigest).
func Digest(secret string) []byte { return digest(secret) }

// Revoke forgets a proplet's secret; the join token applies to it again.
func (c *TokenCredentials) Revoke(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.issued, id)
}

// Check implements Credentials.
func (c *TokenCredentials) Check(id, secret string) bool {
	if secret == "" {
		return false
	}
	d := digest(secret)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if want, ok := c.issued[id]; ok {
		return subtle.ConstantTimeCompare(d, want) == 1
	}
	if c.join == nil {
		return false
	}
	return subtle.ConstantTimeCompare(d, c.join) == 1
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
