// Package standalone is the manager for bare edge hosts: the orchestration
// engine over a bbolt store, the MQTT link to proplets (through an embedded
// broker unless an external one is configured) and the REST API.
package standalone

import (
	"context"
	"crypto/tls"
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
	"github.com/absmach/propeller/manager/flhook"
	"github.com/absmach/propeller/manager/link"
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
	Prefix          string
	Engine          orchestration.Config
	MaxUploadBytes  int64
	Logger          *slog.Logger
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

	store, err := bolt.Open(filepath.Join(cfg.DataDir, "propeller.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	blobStore, err := blobs.Open(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		return err
	}

	var (
		secret      string
		creds       *Credentials
		propletAuth broker.Credentials
	)
	if cfg.Broker == "" {
		if secret, err = ensureToken(filepath.Join(cfg.DataDir, managerSecretFile), log); err != nil {
			return err
		}
		join := joinToken
		if cfg.RequirePropletCredentials {
			join = "" // issued secrets only
			log.Info("join token refused: proplets need their own credential")
		}
		auth := broker.NewTokenCredentials(join)
		if creds, err = OpenCredentials(filepath.Join(cfg.DataDir, CredentialsFile), auth); err != nil {
			return err
		}
		propletAuth = auth
	} else if cfg.RequirePropletCredentials {
		return errors.New("--require-proplet-credentials needs the embedded broker; an external broker has its own credentials")
	}
	conn, err := mqttconn.Open(mqttconn.Config{
		Broker: cfg.Broker, User: cfg.BrokerUser, Password: cfg.BrokerPassword, CAFile: cfg.BrokerCA,
		Addr: cfg.MQTTAddr, TLS: serverTLS, JoinToken: joinToken, ManagerSecret: secret,
		Credentials: propletAuth, Prefix: cfg.Prefix, Logger: log,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if creds != nil {
		creds.SetDisconnect(conn.DisconnectProplet)
	}
	addrs := Addrs{MQTT: conn.Addr}
	linkCfg := conn.Link
	linkCfg.Blobs = blobStore

	engineMetrics := metrics.New()
	linkCfg.ObserveDispatch = engineMetrics.ObserveDispatch
	sink := &engineSink{}
	flh := &flhook.Hook{}
	linkCfg.FL = flh
	mqttLink, err := link.New(linkCfg, sink)
	if err != nil {
		return err
	}
	defer mqttLink.Close()
	engine, err := orchestration.New(cfg.Engine, orchestration.Deps{
		Store:      store,
		Dispatcher: mqttLink,
		Logger:     log,
		Observer: func(t orchestration.Task) {
			engineMetrics.ObserveTask(t)
			flh.TaskChanged(t)
		},
	})
	if err != nil {
		return err
	}
	sink.Engine = engine
	if err := engine.Recover(ctx); err != nil {
		return err
	}
	defer engineMetrics.Attach(metrics.Source{Proplets: engine, Link: mqttLink, Tasks: store})()
	metricsHTTP, err := metricsHandler(engineMetrics)
	if err != nil {
		return err
	}
	flc, flDone, err := startFL(ctx, flh, engine, store, blobStore, ocipush.Models{AuthFile: cfg.RegistryAuth}, log)
	if err != nil {
		return err
	}

	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = mqttLink.Start(connectCtx)
	cancel()
	if err != nil {
		return err
	}
	conn.Admit() // the link is subscribed: nothing a proplet sends can be lost now
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		_ = engine.Run(ctx)
	}()

	api, err := rest.New(rest.Config{
		Engine:         engine,
		Blobs:          blobStore,
		Auth:           BearerToken(apiToken),
		MaxUploadBytes: cfg.MaxUploadBytes,
		Ready: func() error {
			if !mqttLink.Connected() {
				return errors.New("not connected to the MQTT broker")
			}
			return nil
		},
		Metrics:     metricsHTTP,
		FL:          &rest.FL{Jobs: flc, Blobs: blobStore},
		Credentials: credentials(creds),
		CORSOrigins: cfg.CORSOrigins,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	addrs.HTTP = ln.Addr().String()
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	scheme := "http"
	if serverTLS != nil {
		scheme = "https"
	}
	log.Info("REST API listening", "url", scheme+"://"+addrs.HTTP, "token_file", filepath.Join(cfg.DataDir, APITokenFile), "join_token_file", filepath.Join(cfg.DataDir, JoinTokenFile))
	if cfg.Ready != nil {
		cfg.Ready(addrs)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http: %w", err)
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	<-engineDone
	<-flDone
	return nil
}

// engineSink hands the link's reports to the engine, which is built after
// the link (the engine needs the link as its dispatcher).
type engineSink struct {
	*orchestration.Engine
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
