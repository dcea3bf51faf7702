// Package mqttconn decides how a manager (standalone or operator) reaches
// MQTT: it embeds a broker, or it dials an external one. Both manager modes
// call Open and hand the Conn to manager/core, which builds the link from
// its link.Config and admits proplets through it.
package mqttconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/manager/link"
)

// Config says where MQTT is.
type Config struct {
	// Broker is an external broker URL (mqtt://, mqtts://); empty embeds
	// one listening on Addr.
	Broker string
	// User, Password and CAFile log the manager in to an external broker
	// and verify its certificate.
	User, Password, CAFile string

	// Addr is the embedded broker's listen address.
	Addr string
	// TLS, when set, makes the embedded listener speak TLS only.
	TLS *tls.Config
	// JoinToken is the proplets' credential on the embedded broker.
	JoinToken string
	// ManagerSecret is the manager's own login on the embedded broker.
	ManagerSecret string
	// Credentials, when set, checks proplet logins on the embedded broker
	// instead of credentials built from JoinToken alone, so the caller can
	// issue and revoke per-proplet secrets while it runs.
	Credentials broker.Credentials
	// Enroller, when set, makes the join token enrolment only (see
	// broker.Enroller); it must persist what it issues.
	Enroller broker.Enroller

	Prefix string
	Logger *slog.Logger
}

// Conn is an opened MQTT setup.
type Conn struct {
	// Link is the base configuration for the manager's link: broker URL,
	// credentials, TLS and prefix filled in.
	Link link.Config
	// Addr is the broker the proplets reach: the embedded listener's
	// address, or the external URL.
	Addr   string
	broker *broker.Broker
}

// Open starts the embedded broker, holding proplets back until Admit, or
// prepares to dial the external one.
func Open(cfg Config) (*Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Conn{Link: link.Config{Username: cfg.User, Password: cfg.Password, Prefix: cfg.Prefix, Logger: log}}
	if cfg.Broker != "" {
		c.Link.BrokerURL, c.Addr = cfg.Broker, cfg.Broker
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("broker ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("broker ca %s: no PEM certificates", cfg.CAFile)
			}
			c.Link.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		return c, nil
	}
	var creds broker.Credentials = broker.NewTokenCredentials(cfg.JoinToken)
	if cfg.Credentials != nil {
		creds = cfg.Credentials
	}
	b, err := broker.New(broker.Config{
		Addr:          cfg.Addr,
		TLS:           cfg.TLS,
		Prefix:        cfg.Prefix,
		ManagerUser:   wire.ManagerClientID,
		ManagerSecret: cfg.ManagerSecret,
		Authenticator: creds,
		Enroller:      cfg.Enroller,
		Logger:        log,
		HoldProplets:  true,
	})
	if err != nil {
		return nil, err
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	c.broker = b
	c.Addr = b.Addr()
	c.Link.Username, c.Link.Password = wire.ManagerClientID, cfg.ManagerSecret
	c.Link.BrokerURL = "mqtt://" + loopback(c.Addr)
	if cfg.TLS != nil {
		// The manager dials its own listener on loopback; the certificate
		// is for the proplets' host name.
		c.Link.BrokerURL = "mqtts://" + loopback(c.Addr)
		c.Link.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // self-connection on loopback
	}
	log.Info("embedded MQTT broker listening", "addr", c.Addr)
	return c, nil
}

// Admit lets proplets in once the manager's link is subscribed, so nothing
// they re-send after a restart goes to nobody. A no-op for an external
// broker.
func (c *Conn) Admit() {
	if c.broker != nil {
		c.broker.AdmitProplets()
	}
}

// DisconnectProplet closes the embedded broker's connections of proplet id
// (after its credentials changed) and returns how many there were; 0 for
// an external broker.
func (c *Conn) DisconnectProplet(id string) int {
	if c.broker != nil {
		return c.broker.DisconnectProplet(id)
	}
	return 0
}

// Close stops the embedded broker, if any.
func (c *Conn) Close() error {
	if c.broker != nil {
		return c.broker.Close()
	}
	return nil
}

// loopback turns a listen address into one to dial on this host.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
