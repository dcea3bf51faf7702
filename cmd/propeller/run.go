package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/absmach/propeller/proplet"
	"github.com/absmach/propeller/proplet/artifact"
	"github.com/absmach/propeller/standalone"
)

func runStandalone(cmd *cobra.Command, o *standaloneOptions) error {
	log, err := o.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	notify := newSystemdNotifier(cmd.Context(), log)
	defer notify.close()
	return standalone.Run(cmd.Context(), standalone.Config{
		DataDir:        o.dataDir,
		HTTPAddr:       o.httpAddr,
		MQTTAddr:       o.mqttAddr,
		Broker:         o.broker,
		BrokerUser:     o.brokerUser,
		BrokerPassword: o.brokerPassword,
		BrokerCA:       o.brokerCA,
		TLSCert:        o.tlsCert,
		TLSKey:         o.tlsKey,
		TLSClientCA:    o.tlsClientCA,
		Prefix:         o.prefix,
		Engine:         o.engineOptions.config(),
		MaxUploadBytes: o.maxUploadBytes,
		PprofAddr:      o.pprofAddr,
		RegistryAuth:   o.registryAuth,
		Logger:         log,
		Ready:          func(standalone.Addrs) { notify.ready() },

		RequirePropletCredentials: o.requireCredentials,
		CORSOrigins:               o.corsOrigins,
	})
}

func runProplet(cmd *cobra.Command, o *propletOptions) error {
	log, err := o.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	switch {
	case o.id == "":
		return errors.New("--id is required: the host name is unknown")
	case o.cacheDir == "":
		return errors.New("--cache-dir is required: there is no home directory for the default")
	}
	if o.token == "" && o.tlsCert == "" && !proplet.Enrolled(o.cacheDir) {
		return errors.New("--token is required: the manager's join token (<data-dir>/join-token) or this proplet's secret (or --tls-cert for mutual TLS)")
	}
	plain := map[string]artifact.PlainHTTP{"never": artifact.PlainHTTPNever, "loopback": artifact.PlainHTTPLoopback, "always": artifact.PlainHTTPAlways}
	ph, ok := plain[o.ociPlainHTTP]
	if !ok {
		return fmt.Errorf("--oci-plain-http %q: want never, loopback or always", o.ociPlainHTTP)
	}
	tlsCfg, err := clientTLS(o.tlsCA, o.tlsCert, o.tlsKey)
	if err != nil {
		return err
	}
	if o.pprofAddr != "" {
		go standalone.ServePprof(o.pprofAddr, log)
	}
	notify := newSystemdNotifier(cmd.Context(), log)
	defer notify.close()
	return proplet.Run(cmd.Context(), proplet.Config{
		BrokerURL:         o.broker,
		ID:                o.id,
		Token:             o.token,
		TLS:               tlsCfg,
		Prefix:            o.prefix,
		Labels:            o.labels,
		Slots:             o.slots,
		CacheDir:          o.cacheDir,
		CacheBytes:        o.cacheBytes,
		MemoryPages:       o.memoryPages,
		DefaultTimeout:    o.defaultTimeout,
		HeartbeatInterval: o.heartbeatInterval,
		OCIPlainHTTP:      ph,
		Version:           buildVersion(),
		Logger:            log,
		ExecLog:           o.execLog,
		Ready:             notify.ready,
	})
}

// clientTLS builds a TLS client config from PEM files; nil when none given.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no PEM certificates", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
