// Package proplet is the worker: it joins the broker, runs the WASM tasks
// the manager sends it with wazero, and reports back. This file wires the
// agent (MQTT), the artifact fetcher and the runtime together.
package proplet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/absmach/propeller/proplet/agent"
	"github.com/absmach/propeller/proplet/artifact"
	"github.com/absmach/propeller/proplet/runtime"
)

// Config configures a proplet. It is passed by value.
type Config struct {
	BrokerURL string
	ID        string
	Token     string
	TLS       *tls.Config
	Prefix    string
	Labels    map[string]string
	Slots     int
	// CacheDir holds fetched modules, compiled code, the outbox and FL
	// scratch space; it must survive restarts (not /tmp), and one proplet
	// holds it at a time (a lock file, see lockDir).
	CacheDir   string
	CacheBytes int64
	// MemoryPages caps every module's linear memory (64 KiB pages).
	MemoryPages       uint32
	DefaultTimeout    time.Duration
	HeartbeatInterval time.Duration
	// OCIPlainHTTP selects registries reached without TLS.
	OCIPlainHTTP artifact.PlainHTTP
	Version      string
	Logger       *slog.Logger
	// ExecLog, when set, is a file the proplet appends a JSON line to
	// when each module starts and ends (ExecRecord); for tests and
	// audits, off by default.
	ExecLog string
	// Ready, when set, is called once the proplet is set up (cache dir
	// locked, runtime and agent built) and starts joining the broker,
	// which it keeps retrying; systemd's Type=notify waits for it.
	Ready func()
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.CacheDir == "" {
		return errors.New("proplet: cache dir is required")
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	unlock, err := lockDir(cfg.CacheDir)
	if err != nil {
		return err
	}
	defer unlock()
	dirs := map[string]string{}
	for _, name := range []string{"state", "compiled", "blobs", "work"} {
		d := filepath.Join(cfg.CacheDir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("cache dir: %w", err)
		}
		dirs[name] = d
	}
	rt, err := runtime.New(ctx, runtime.Config{
		CompilationCacheDir: dirs["compiled"],
		DefaultMemoryPages:  cfg.MemoryPages,
		MaxMemoryPages:      cfg.MemoryPages,
		DefaultTimeout:      cfg.DefaultTimeout,
	})
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	defer rt.Close(context.WithoutCancel(ctx))

	ag, err := agent.New(agent.Config{
		BrokerURL:         cfg.BrokerURL,
		ID:                cfg.ID,
		Token:             cfg.Token,
		TLS:               cfg.TLS,
		Prefix:            cfg.Prefix,
		Labels:            cfg.Labels,
		Slots:             cfg.Slots,
		MemoryBytes:       int64(cfg.MemoryPages) * 64 << 10,
		HeartbeatInterval: cfg.HeartbeatInterval,
		StateDir:          dirs["state"],
		Logger:            log,
		Version:           cfg.Version,
	})
	if err != nil {
		return err
	}
	// The agent relays blobs only the manager has (relay://).
	fetcher, err := artifact.New(artifact.Config{
		CacheDir:      dirs["blobs"],
		CacheMaxBytes: cfg.CacheBytes,
		OCIPlainHTTP:  cfg.OCIPlainHTTP,
		Relay:         ag,
	})
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	xlog, err := openExecLog(cfg.ExecLog, cfg.ID)
	if err != nil {
		return err
	}
	defer xlog.Close()
	log.Info("proplet starting", "id", cfg.ID, "broker", cfg.BrokerURL, "slots", cfg.Slots, "labels", cfg.Labels, "cache_dir", cfg.CacheDir)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return ag.Run(ctx, &executor{fetch: fetcher, run: rt, workDir: dirs["work"], timeout: cfg.DefaultTimeout, log: xlog})
}

// CredentialPath is where a proplet with cacheDir keeps the secret it was
// issued when it enrolled with the join token.
func CredentialPath(cacheDir string) string {
	return filepath.Join(cacheDir, "state", agent.CredentialFile)
}

// Enrolled reports whether the proplet with cacheDir holds an enrolled
// secret, so it needs no --token.
func Enrolled(cacheDir string) bool {
	_, err := os.Stat(CredentialPath(cacheDir))
	return err == nil
}
