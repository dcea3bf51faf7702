package operator

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// brokerTLS is the embedded broker's listener TLS from cfg's PEM files, as
// the standalone manager's --tls-cert/--tls-key give it; nil without them
// (plain MQTT). The files are read when the operator starts and again when
// it next becomes the leader: a rotated Secret takes a restart.
func brokerTLS(cfg Config) (*tls.Config, error) {
	switch {
	case cfg.TLSCert == "" && cfg.TLSKey == "":
		return nil, nil
	case cfg.TLSCert == "" || cfg.TLSKey == "":
		return nil, errors.New("operator: broker TLS needs both a certificate and a key")
	case cfg.Broker != "":
		return nil, errors.New("operator: a TLS certificate is for the embedded broker; an external broker's TLS is its own (--broker mqtts://, --broker-ca)")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("operator: broker TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
