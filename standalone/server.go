// Package standalone is the manager for bare edge hosts: the orchestration
// engine over a bbolt store, the MQTT link to proplets (through an embedded
// broker unless an external one is configured) and the REST API.
package standalone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/manager/metrics"
	"github.com/absmach/propeller/manager/mqttconn"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/bolt"
)

// Config configures the standalone manager. It is passed by value.
type Config struct {
	// DataDir holds the database, the tokens and uploaded modules.
	DataDir  string
	HTTPAddr string
	// MQTTAddr is where the embedded broker listens; unused with Broker.
	MQTTAddr string
	// Broker, when set, is an external broker URL (mqtt://, mqtts://) used
	// instead of the embedded one, logging in as BrokerUser/BrokerPassword.
	Broker         string
	BrokerUser     string
	BrokerPassword string
	// BrokerCA is a PEM bundle to verify an external mqtts:// broker.
	BrokerCA string
	// TLSCert and TLSKey enable HTTPS and the embedded broker's TLS.
	TLSCert, TLSKey string
	// TLSClientCA, a PEM bundle, lets proplets log in to the embedded
	// broker with a client certificate it signed instead of a secret
	// (mutual TLS): the certificate's common name is the proplet id.
	// Needs TLSCert; proplets without a certificate still log in with a
	// secret or the join token.
	TLSClientCA    string
	Prefix         string
	Engine         orchestration.Config
	MaxUploadBytes int64
	Logger         *slog.Logger
	// PprofAddr, when set, serves net/http/pprof there (keep it on
	// loopback: it is unauthenticated).
	PprofAddr string
	// RegistryAuth is a Docker config.json with the credentials of OCI
	// registries that oci:// modelRefs name; read on every pull. Empty
	// pulls anonymously.
	RegistryAuth string
	// RequirePropletCredentials refuses the join token on the embedded
	// broker: only proplets with a secret issued over the API
	// (POST /v1/proplets/{id}/credentials) may log in.
	RequirePropletCredentials bool
	// CORSOrigins are the origins browsers may call the REST API from;
	// empty disables CORS.
	CORSOrigins []string
	// Ready, when set, receives the bound addresses once serving, so
	// callers (tests) can use port 0.
	Ready func(Addrs)
	// Built, when set, receives the core Run built, before it runs.
	Built func(*core.Core)
	// HTTPReadHeaderTimeout, HTTPReadTimeout and HTTPIdleTimeout bound a
	// REST client: its request headers (default 10s), the whole request
	// with its body (default 5m, a 32 MiB module at 1 Mbit/s), and a
	// keep-alive connection between requests (default 2m). Responses have
	// no write timeout: event streams and blocking queries stay open.
	HTTPReadHeaderTimeout, HTTPReadTimeout, HTTPIdleTimeout time.Duration
}

// Defaults of the HTTP server's timeouts (docs/operations.md).
const (
	DefaultHTTPReadHeaderTimeout = 10 * time.Second
	DefaultHTTPReadTimeout       = 5 * time.Minute
	DefaultHTTPIdleTimeout       = 2 * time.Minute
)

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Addrs are the addresses the manager bound.
type Addrs struct {
	HTTP string
	MQTT string
}

// Token file names under DataDir.
const (
	APITokenFile      = "api-token"
	JoinTokenFile     = "join-token"
	managerSecretFile = "manager-secret"
)

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if cfg.RegistryAuth != "" {
		if err := ocipush.CheckDockerConfig(cfg.RegistryAuth); err != nil {
			return err
		}
	}
	if cfg.PprofAddr != "" {
		go ServePprof(cfg.PprofAddr, log)
	}
	apiToken, err := ensureToken(filepath.Join(cfg.DataDir, APITokenFile), log)
	if err != nil {
		return err
	}
	joinToken, err := ensureToken(filepath.Join(cfg.DataDir, JoinTokenFile), log)
	if err != nil {
		return err
	}
	var serverTLS *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		serverTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	brokerTLS, err := withClientCA(serverTLS, cfg.TLSClientCA)
	if err != nil {
		return err
	}

	store, err := bolt.Open(filepath.Join(cfg.DataDir, "propeller.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	blobStore, err := blobs.Open(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		return err
	}

	conn, creds, err := openMQTT(cfg, log, joinToken, brokerTLS)
	if err != nil {
		return err
	}
	defer conn.Close()
	engineMetrics := metrics.New()
	metricsHTTP, err := metricsHandler(engineMetrics)
	if err != nil {
		return err
	}
	c, err := core.New(core.Config{Engine: cfg.Engine}, core.Deps{
		Tasks: store, FLJobs: store, Blobs: blobStore, MQTT: conn,
		Models: ocipush.Models{AuthFile: cfg.RegistryAuth}, Logger: log,
		Metrics: engineMetrics, Phases: store,
	})
	if err != nil {
		return err
	}
	if cfg.Built != nil {
		cfg.Built(c)
	}

	api, err := rest.New(rest.Config{
		Engine:         c.Engine(),
		Blobs:          c.Blobs(),
		Auth:           BearerToken(apiToken),
		MaxUploadBytes: cfg.MaxUploadBytes,
		Ready:          c.CheckReady,
		Metrics:        metricsHTTP,
		FL:             &rest.FL{Jobs: c.FL(), Blobs: c.Blobs()},
		Credentials:    credentials(creds),
		Backup:         store,
		CORSOrigins:    cfg.CORSOrigins,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log, c, api, serverTLS, conn.Addr)
}

// openMQTT opens the broker connection: the embedded broker, which lets
// proplets in with the join token (unless RequirePropletCredentials) or a
// secret issued over the API, or an external broker, which has its own
// credentials (creds is nil then).
func openMQTT(cfg Config, log *slog.Logger, joinToken string, serverTLS *tls.Config) (*mqttconn.Conn, *Credentials, error) {
	var (
		secret      string
		auth        *broker.TokenCredentials
		store       *CredentialStore
		propletAuth broker.Credentials
		enroller    broker.Enroller
		err         error
	)
	if cfg.Broker == "" {
		if secret, err = ensureToken(filepath.Join(cfg.DataDir, managerSecretFile), log); err != nil {
			return nil, nil, err
		}
		join := joinToken
		if cfg.RequirePropletCredentials {
			join = "" // issued secrets only
			log.Info("join token refused: proplets need their own credential")
		}
		auth = broker.NewTokenCredentials(join)
		propletAuth = auth
		if store, err = OpenCredentialStore(filepath.Join(cfg.DataDir, CredentialsFile), auth); err != nil {
			return nil, nil, err
		}
		enroller = store
	} else if cfg.RequirePropletCredentials {
		return nil, nil, errors.New("--require-proplet-credentials needs the embedded broker; an external broker has its own credentials")
	}
	conn, err := mqttconn.Open(mqttconn.Config{
		Broker: cfg.Broker, User: cfg.BrokerUser, Password: cfg.BrokerPassword, CAFile: cfg.BrokerCA,
		Addr: cfg.MQTTAddr, TLS: serverTLS, JoinToken: joinToken, ManagerSecret: secret,
		Credentials: propletAuth, Enroller: enroller, Prefix: cfg.Prefix, Logger: log,
	})
	if err != nil {
		return nil, nil, err
	}
	if store == nil {
		return conn, nil, nil
	}
	return conn, NewCredentials(store, conn.DisconnectProplet), nil
}

// withClientCA returns serverTLS for the embedded broker: unchanged without
// a client CA, else also verifying the client certificates it signed (a
// client without one logs in with a secret).
func withClientCA(serverTLS *tls.Config, caFile string) (*tls.Config, error) {
	if caFile == "" {
		return serverTLS, nil
	}
	if serverTLS == nil {
		return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are verified over TLS")
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls client ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls client ca %s: no PEM certificates", caFile)
	}
	c := serverTLS.Clone()
	c.ClientCAs = pool
	c.ClientAuth = tls.VerifyClientCertIfGiven
	return c, nil
}

// serve runs the core and, once it is ready, the REST API on it, until
// ctx ends or either of them fails; then it shuts both down.
func serve(ctx context.Context, cfg Config, log *slog.Logger, c *core.Core, api http.Handler, serverTLS *tls.Config, mqttAddr string) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	coreDone := make(chan error, 1)
	go func() { coreDone <- c.Run(runCtx) }()
	select {
	case <-c.Ready():
	case err := <-coreDone:
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		stop()
		return errors.Join(fmt.Errorf("http: %w", err), <-coreDone)
	}
	scheme := "http"
	if serverTLS != nil {
		ln, scheme = tls.NewListener(ln, serverTLS), "https"
	}
	addrs := Addrs{HTTP: ln.Addr().String(), MQTT: mqttAddr}
	// Without ReadTimeout a body that never finishes holds its connection
	// and handler forever.
	srv := &http.Server{Handler: api, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ReadHeaderTimeout: orDefault(cfg.HTTPReadHeaderTimeout, DefaultHTTPReadHeaderTimeout),
		ReadTimeout:       orDefault(cfg.HTTPReadTimeout, DefaultHTTPReadTimeout),
		IdleTimeout:       orDefault(cfg.HTTPIdleTimeout, DefaultHTTPIdleTimeout)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("REST API listening", "url", scheme+"://"+addrs.HTTP, "token_file", filepath.Join(cfg.DataDir, APITokenFile), "join_token_file", filepath.Join(cfg.DataDir, JoinTokenFile))
	if cfg.Ready != nil {
		cfg.Ready(addrs)
	}

	coreStopped := false
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http: %w", err)
	case err = <-coreDone:
		coreStopped = true // the engine ended early: nothing serves tasks any more
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	stop()
	if !coreStopped {
		err = errors.Join(err, <-coreDone)
	}
	return err
}

// ServePprof serves net/http/pprof on addr until the process exits.
func ServePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("pprof listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		log.Warn("pprof server", "err", err)
	}
}
