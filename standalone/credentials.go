package standalone

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/internal/durable"
	"github.com/absmach/propeller/manager/broker"
	restapi "github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
)

// CredentialsFile, under DataDir, holds the SHA-256 digests of the issued
// per-proplet secrets (never the secrets).
const CredentialsFile = "proplet-credentials.json"

// ErrNoCredential is returned for a proplet without an issued secret; it
// is an orchestration.ErrNotFound, which the REST API answers with 404.
var ErrNoCredential = fmt.Errorf("proplet has no credential: %w", orchestration.ErrNotFound)

type credentialRecord struct {
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	// Pending marks a secret enrolled over MQTT that the proplet has not
	// logged in with yet (see broker.Enroller).
	Pending bool `json:"pending,omitempty"`
}

type credentialsFile struct {
	Proplets map[string]credentialRecord `json:"proplets"`
}

// CredentialStore keeps the per-proplet MQTT secrets of the embedded
// broker: only SHA-256 digests of the secrets (256 random bits), on disk
// and in the broker; a change is on disk before the broker applies it. It
// is the broker's Enroller: the broker needs it before it listens, and
// Credentials (the REST side, which also disconnects) needs the broker.
type CredentialStore struct {
	path string
	auth *broker.TokenCredentials
	now  func() time.Time

	mu   sync.Mutex
	recs map[string]credentialRecord
}

// Credentials issues, rotates and revokes per-proplet MQTT secrets, enrolled
// or issued over the API, and closes the proplet's open connections so the
// change is effective at once, without a restart.
type Credentials struct {
	*CredentialStore
	disconnect func(id string) int
}

// NewCredentials serves s over the API. disconnect, when not nil, closes a
// proplet's connections after its secret changed.
func NewCredentials(s *CredentialStore, disconnect func(id string) int) *Credentials {
	return &Credentials{CredentialStore: s, disconnect: disconnect}
}

// OpenCredentials is OpenCredentialStore then NewCredentials.
func OpenCredentials(path string, auth *broker.TokenCredentials, disconnect func(id string) int) (*Credentials, error) {
	s, err := OpenCredentialStore(path, auth)
	if err != nil {
		return nil, err
	}
	return NewCredentials(s, disconnect), nil
}

// OpenCredentialStore loads the digests at path (a missing file is an empty
// set) into auth.
func OpenCredentialStore(path string, auth *broker.TokenCredentials) (*CredentialStore, error) {
	c := &CredentialStore{path: path, auth: auth, now: time.Now, recs: map[string]credentialRecord{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("proplet credentials: %w", err)
	}
	var f credentialsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("proplet credentials %s: %w", path, err)
	}
	for id, r := range f.Proplets {
		sum, err := hex.DecodeString(r.SHA256)
		if err != nil || !validCredentialID(id) {
			return nil, fmt.Errorf("proplet credentials %s: bad entry for %q", path, id)
		}
		load := auth.IssueDigest
		if r.Pending {
			load = auth.PendingDigest
		}
		if err := load(id, sum); err != nil {
			return nil, fmt.Errorf("proplet credentials %s: entry for %q: %w", path, id, err)
		}
		c.recs[id] = r
	}
	return c, nil
}

// Issue creates a fresh secret for id, replacing any previous one, and
// closes the proplet's connections: whoever logged in with the old secret
// must log in again with the new one.
func (c *Credentials) Issue(id string) (rest.IssuedCredential, error) {
	if err := checkCredentialID(id); err != nil {
		return rest.IssuedCredential{}, err
	}
	secret, err := broker.NewSecret()
	if err != nil {
		return rest.IssuedCredential{}, fmt.Errorf("generate secret: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := credentialRecord{SHA256: hex.EncodeToString(broker.Digest(secret)), CreatedAt: c.now().UTC().Truncate(time.Second)}
	next := cloneRecords(c.recs)
	next[id] = rec
	if err := c.save(next); err != nil {
		return rest.IssuedCredential{}, err
	}
	c.recs = next
	c.auth.Issue(id, secret)
	c.disconnectLocked(id)
	return rest.IssuedCredential{PropletID: id, Secret: secret, CreatedAt: rec.CreatedAt}, nil
}

// Enroll implements broker.Enroller: a fresh pending secret for id, on
// disk before the broker accepts it. It never replaces a confirmed secret.
func (c *CredentialStore) Enroll(id string) (string, error) {
	if err := checkCredentialID(id); err != nil {
		return "", err
	}
	secret, err := broker.NewSecret()
	if err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.recs[id]; ok && !r.Pending {
		return "", fmt.Errorf("proplet %q is enrolled already", id)
	}
	sum := broker.Digest(secret)
	next := cloneRecords(c.recs)
	next[id] = credentialRecord{SHA256: hex.EncodeToString(sum), CreatedAt: c.now().UTC().Truncate(time.Second), Pending: true}
	if err := c.save(next); err != nil {
		return "", err
	}
	if err := c.auth.PendingDigest(id, sum); err != nil {
		return "", err
	}
	c.recs = next
	return secret, nil
}

// Confirm implements broker.Enroller: id's pending secret becomes its only
// credential. A secret that is not pending (issued over the API meanwhile)
// is left alone.
func (c *CredentialStore) Confirm(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[id]
	if !ok || !r.Pending {
		return nil
	}
	r.Pending = false
	next := cloneRecords(c.recs)
	next[id] = r
	if err := c.save(next); err != nil {
		return err
	}
	c.recs = next
	c.auth.Confirm(id)
	return nil
}

// Get reports when id's secret was issued, or ErrNoCredential.
func (c *CredentialStore) Get(id string) (rest.PropletCredential, error) {
	if err := checkCredentialID(id); err != nil {
		return rest.PropletCredential{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[id]
	if !ok {
		return rest.PropletCredential{}, ErrNoCredential
	}
	return rest.PropletCredential{PropletID: id, CreatedAt: r.CreatedAt}, nil
}

// Revoke forgets id's secret and closes its connections, or returns
// ErrNoCredential.
func (c *Credentials) Revoke(id string) error {
	if err := checkCredentialID(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.recs[id]; !ok {
		return ErrNoCredential
	}
	next := cloneRecords(c.recs)
	delete(next, id)
	if err := c.save(next); err != nil {
		return err
	}
	c.recs = next
	c.auth.Revoke(id)
	c.disconnectLocked(id)
	return nil
}

func (c *Credentials) disconnectLocked(id string) {
	if c.disconnect != nil {
		c.disconnect(id)
	}
}

func cloneRecords(m map[string]credentialRecord) map[string]credentialRecord {
	out := make(map[string]credentialRecord, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// save replaces the file atomically (temp file, fsync, rename, fsync dir).
func (c *CredentialStore) save(recs map[string]credentialRecord) error {
	b, err := json.MarshalIndent(credentialsFile{Proplets: recs}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(c.path)
	tmp, err := durable.WriteTemp(dir, ".proplet-credentials-*", append(b, '\n'), 0o600)
	if err != nil {
		return fmt.Errorf("save proplet credentials: %w", err)
	}
	defer os.Remove(tmp) // a no-op after the rename
	if err := os.Rename(tmp, c.path); err != nil {
		return fmt.Errorf("save proplet credentials: %w", err)
	}
	_ = durable.SyncDir(dir)
	return nil
}

// validCredentialID accepts what the broker accepts as a proplet username:
// a wire.ValidID that is not the manager's (a login as the manager's user
// is checked against the manager secret, and client ids starting with it
// are refused to proplets).
func validCredentialID(id string) bool {
	return wire.ValidID(id) && !strings.HasPrefix(id, wire.ManagerClientID)
}

// checkCredentialID refuses, as orchestration.ErrInvalid, an id the
// broker would never accept as a proplet.
func checkCredentialID(id string) error {
	if !validCredentialID(id) {
		return fmt.Errorf("proplet id %q: an id is 1 to 128 letters, digits, '-', '_' or '.', and does not start with %s: %w",
			id, wire.ManagerClientID, orchestration.ErrInvalid)
	}
	return nil
}

// credentials is creds as the REST API's port: nil (an external broker)
// stays a nil interface, which the API answers with 501.
func credentials(creds *Credentials) restapi.Credentials {
	if creds == nil {
		return nil
	}
	return creds
}
