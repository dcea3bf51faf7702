package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/internal/durable"
)

// CredentialFile, under StateDir, holds the secret the manager issued this
// proplet when it enrolled with the join token (mode 0600). While it
// exists the agent logs in with it instead of Config.Token.
const CredentialFile = "credential"

// refusedBackoff is the least wait after the broker refused the login: a
// refusal does not go away by itself within a second.
const refusedBackoff = 5 * time.Second

// password is the secret the next login uses: the enrolled one if stored,
// else Config.Token. stored says which.
func (a *Agent) password() (secret string, stored bool) {
	b, err := os.ReadFile(a.credPath)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("stored credential unreadable; logging in with --token", "path", a.credPath, "err", err)
		}
		return a.cfg.Token, false
	}
	if s := string(bytes.TrimSpace(b)); s != "" {
		return s, true
	}
	return a.cfg.Token, false
}

// onCredential stores the secret the broker issued on this connection and
// reconnects with it at once: the first login with it confirms it on the
// manager (until then the join token still enrolls this id again, so a
// crash before the write below costs an enrollment, never the id).
func (a *Agent) onCredential(c *conn) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		var cr wire.Credential
		if err := wire.Decode(m.Payload(), &cr); err != nil || cr.ID != a.cfg.ID || cr.Secret == "" {
			a.log.Warn("ignored a malformed credential message", "err", err)
			return
		}
		if err := a.storeCredential(cr.Secret); err != nil {
			a.log.Error("enrolled, but storing the credential failed; enrolling again on the next login", "path", a.credPath, "err", err)
			return
		}
		a.log.Info("enrolled: the manager issued this proplet its own credential; it logs in with it from now on", "path", a.credPath)
		c.enrolled.Store(true)
		go func() {
			c.client.Disconnect(250)
			c.markLost()
		}()
	}
}

func (a *Agent) storeCredential(secret string) error {
	dir := filepath.Dir(a.credPath)
	tmp, err := durable.WriteTemp(dir, ".credential-*", []byte(secret+"\n"), 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op after the rename
	if err := os.Rename(tmp, a.credPath); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// refusal explains a login the broker refused for a reason that retrying
// soon does not fix, or returns "" for other errors.
func (a *Agent) refusal(err error, stored bool) string {
	// MQTT 3.1.1 brokers answer a bad password with code 4 or 5.
	bad := errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised)
	switch {
	case bad && stored:
		return fmt.Sprintf("the manager refused this proplet's credential (%s); it was revoked or rotated: "+
			"issue a new one with `propeller proplet credentials create %s` and pass it as --token, "+
			"or remove %s to enroll again with the join token", a.credPath, a.cfg.ID, a.credPath)
	case bad:
		return fmt.Sprintf("the manager refused --token for proplet %s: it is not the join token, "+
			"or %s is enrolled already and only its own credential logs it in "+
			"(`propeller proplet credentials create %s` issues a new one)", a.cfg.ID, a.cfg.ID, a.cfg.ID)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Sprintf("the broker refused this proplet: another proplet process is connected as %s; "+
			"give each proplet its own --id (if this proplet just restarted, the broker drops its old "+
			"connection within the keepalive and lets this one in)", a.cfg.ID)
	}
	return ""
}
