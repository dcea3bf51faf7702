package standalone

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/absmach/propeller/internal/durable"
)

// ensureToken returns the secret stored at path, creating it (mode 0600)
// with 256 random bits on first start.
func ensureToken(path string, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty; delete it to get a new token", path)
		}
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("token file is readable by others; chmod 600 it", "file", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	// Written whole to a temporary file, then linked into place: a reader
	// (a client, a test, the next start after a crash) sees no file or the
	// whole token, never an empty or partial one. Link, unlike rename,
	// fails when another process created the token first.
	tmp, err := durable.WriteTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*", []byte(tok+"\n"), 0o600)
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return ensureToken(path, log) // another process won the race
		}
		return "", fmt.Errorf("create token: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	log.Info("created token", "file", path)
	return tok, nil
}

// BearerToken authenticates REST requests by the API token
// (<data-dir>/api-token) in an Authorization: Bearer header.
type BearerToken string

// Authenticate implements manager/rest.Authenticator.
func (t BearerToken) Authenticate(r *http.Request) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return errors.New("missing bearer token: send Authorization: Bearer <token>; the token is in <data-dir>/" + APITokenFile)
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(t)) != 1 {
		return errors.New("invalid bearer token")
	}
	return nil
}
