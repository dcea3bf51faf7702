// Package mosquitto writes a Mosquitto configuration (password file and
// ACL) that enforces the same rules as the embedded broker, for running
// Propeller against an external Mosquitto.
//
// Mosquitto cannot accept a shared join token for arbitrary usernames, so
// every proplet must be listed with its own secret.
package mosquitto

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/absmach/propeller/api/wire"
)

// Config describes the broker to generate.
type Config struct {
	// Listen is "host:port" of the single listener.
	Listen string
	// Prefix is the topic prefix; empty means wire.DefaultPrefix.
	Prefix        string
	ManagerUser   string
	ManagerSecret string
	// Proplets maps proplet id to its secret.
	Proplets map[string]string
	// AllowAnonymous disables authentication and the ACL (tests only).
	AllowAnonymous bool
	// User is the account Mosquitto switches to when started as root
	// ("user" option); empty keeps Mosquitto's default ("mosquitto"),
	// which must be able to read the generated files.
	User string
}

// Files written by Write, relative to its dir.
const (
	ConfFile     = "mosquitto.conf"
	PasswordFile = "passwd"
	ACLFile      = "acl"
)

// Write writes mosquitto.conf, passwd and acl into dir and returns the path
// of mosquitto.conf.
func Write(dir string, c Config) (string, error) {
	host, port, ok := strings.Cut(c.Listen, ":")
	if !ok || port == "" {
		return "", fmt.Errorf("mosquitto: listen address %q needs host:port", c.Listen)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "listener %s %s\n", port, host)
	conf.WriteString("persistence false\n")
	conf.WriteString("log_dest stderr\n")
	conf.WriteString("max_queued_messages 10000\n")
	// Proplets acknowledge a start only once it is durable; let many be
	// in flight so bursts are not throttled at 20 (the default).
	conf.WriteString("max_inflight_messages 1000\n")
	if c.User != "" {
		fmt.Fprintf(&conf, "user %s\n", c.User)
	}
	if c.AllowAnonymous {
		conf.WriteString("allow_anonymous true\n")
	} else {
		if c.ManagerUser == "" || c.ManagerSecret == "" {
			return "", errors.New("mosquitto: manager user and secret are required")
		}
		pw, err := passwordFile(c)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, PasswordFile), pw, 0o600); err != nil {
			return "", fmt.Errorf("mosquitto: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, ACLFile), ACL(c.Prefix, c.ManagerUser), 0o600); err != nil {
			return "", fmt.Errorf("mosquitto: %w", err)
		}
		conf.WriteString("allow_anonymous false\n")
		// The client id selects the session; tying it to the username
		// stops a proplet from kicking another one off.
		conf.WriteString("use_username_as_clientid true\n")
		fmt.Fprintf(&conf, "password_file %s\n", filepath.Join(dir, PasswordFile))
		fmt.Fprintf(&conf, "acl_file %s\n", filepath.Join(dir, ACLFile))
	}
	path := filepath.Join(dir, ConfFile)
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		return "", fmt.Errorf("mosquitto: %w", err)
	}
	return path, nil
}

func passwordFile(c Config) ([]byte, error) {
	ids := make([]string, 0, len(c.Proplets))
	for id := range c.Proplets {
		if !wire.ValidID(id) || id == c.ManagerUser {
			return nil, fmt.Errorf("mosquitto: invalid proplet id %q", id)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	line := func(user, secret string) error {
		h, err := HashPassword(secret)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", user, h)
		return nil
	}
	if err := line(c.ManagerUser, c.ManagerSecret); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := line(id, c.Proplets[id]); err != nil {
			return nil, err
		}
	}
	return []byte(b.String()), nil
}

// HashPassword returns secret in Mosquitto 2's "$7$" password-file format
// (PBKDF2-SHA512, 101 iterations, 12-byte salt), as mosquitto_passwd
// writes it.
func HashPassword(secret string) (string, error) {
	const iterations = 101
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha512.New, secret, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("$7$%d$%s$%s", iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// ACL returns an acl_file granting the manager everything and each proplet
// (username = id) only its own subtree, the same rules as manager/broker.
func ACL(prefix, managerUser string) []byte {
	t := wire.Topics{Prefix: prefix}
	own := t.Proplet("%u")
	var b strings.Builder
	// Patterns first: they apply to every user, and Mosquitto reads the
	// lines after "user" as that user's own rules.
	for _, k := range []string{wire.KindStatus, wire.KindHeartbeat, wire.KindEvents, wire.KindFLUpdates, wire.KindArtifactRequest} {
		fmt.Fprintf(&b, "pattern write %s/%s\n", own, k)
	}
	for _, k := range []string{wire.KindCommands, wire.KindArtifactChunks} {
		fmt.Fprintf(&b, "pattern read %s/%s\n", own, k)
	}
	fmt.Fprintf(&b, "\nuser %s\ntopic readwrite #\n", managerUser)
	return []byte(b.String())
}
