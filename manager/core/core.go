// Package core assembles what both managers run, once: the orchestration
// engine, the MQTT link to proplets and the federated-learning
// coordinator, over the ports a frontend brings (task and FL stores, blob
// store, MQTT connection, clock, metrics). The standalone manager and the
// operator each build a store, call New, mount their frontend on the
// Core's parts and call Run; a capability added here reaches both.
//
// The engine needs the link (its dispatcher) and the link delivers what
// proplets report to the engine, so New builds them in the one order that
// needs no later assignment: the link first, without a sink; the engine
// with the link as its dispatcher; the coordinator over the engine, its
// task changes queued on an fl.Changes the engine's observer fed from the
// start; and Run hands the engine and the coordinator to the link as it
// starts it.
package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/link"
	"github.com/absmach/propeller/manager/metrics"
	"github.com/absmach/propeller/manager/mqttconn"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// DefaultConnectTimeout bounds the link's first connection to the broker.
const DefaultConnectTimeout = 30 * time.Second

// Config configures the core. It is passed by value.
type Config struct {
	Engine orchestration.Config
	FL     fl.Config
	// ConnectTimeout bounds Run's first connection to the broker; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// Deps are the ports the core is built from.
type Deps struct {
	// Tasks persists tasks and proplets. Required.
	Tasks orchestration.Store
	// FLJobs persists federated jobs. Required.
	FLJobs fl.Store
	// Blobs holds uploaded modules, models and updates; the link relays
	// modules from it. Required.
	Blobs *blobs.Store
	// MQTT is the opened broker connection: the link dials it, and Run
	// admits proplets through it once the link is subscribed. The caller
	// closes it after Run returned. Required.
	MQTT *mqttconn.Conn
	// Models fetches oci:// initial models; nil accepts blob:// only.
	Models fl.Models
	// Clock defaults to the wall clock.
	Clock  orchestration.Clock
	Logger *slog.Logger
	// Metrics, when set, gets the dispatch latencies and finished tasks,
	// and reads this core's engine and link while Run runs.
	Metrics *metrics.Metrics
	// Phases, when set, exports propeller_tasks{phase} from a cheap count.
	Phases metrics.PhaseCounter
	// TaskObservers are told about every task change the engine commits,
	// after metrics and the FL coordinator. They run on the engine's
	// goroutine with the task's lock held: quick, and no calls back into
	// the engine for that task (see orchestration.Deps.Observer).
	TaskObservers []func(orchestration.Task)
	// PropletObservers are called with a proplet's id after the engine
	// recorded it joining or leaving.
	PropletObservers []func(propletID string)
}

// Core is the engine, the link and the FL coordinator of one manager.
type Core struct {
	cfg     Config
	log     *slog.Logger
	engine  *orchestration.Engine
	link    *link.Link
	fl      *fl.Coordinator
	blobs   *blobs.Store
	conn    *mqttconn.Conn
	metrics *metrics.Metrics
	phases  metrics.PhaseCounter
	onPeer  []func(string)

	ran   atomic.Bool
	ready chan struct{}
}

// New builds the core in one call; nothing is connected or recovered
// until Run.
func New(cfg Config, deps Deps) (*Core, error) {
	switch {
	case deps.Tasks == nil:
		return nil, errors.New("core: a task store is required")
	case deps.FLJobs == nil:
		return nil, errors.New("core: an FL job store is required")
	case deps.Blobs == nil:
		return nil, errors.New("core: a blob store is required")
	case deps.MQTT == nil:
		return nil, errors.New("core: an MQTT connection is required")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	m := deps.Metrics
	if m == nil {
		m = metrics.New() // registered nowhere: observed and dropped
	}

	linkCfg := deps.MQTT.Link
	linkCfg.Blobs = deps.Blobs
	linkCfg.ObserveDispatch = m.ObserveDispatch
	l, err := link.New(linkCfg)
	if err != nil {
		return nil, err
	}
	changes := fl.NewChanges()
	observers := append([]func(orchestration.Task){m.ObserveTask, changes.TaskChanged}, deps.TaskObservers...)
	engine, err := orchestration.New(cfg.Engine, orchestration.Deps{
		Store:      deps.Tasks,
		Dispatcher: l,
		Link:       l,
		Clock:      deps.Clock,
		Logger:     log,
		Observer: func(t orchestration.Task) {
			for _, o := range observers {
				o(t)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	coord, err := fl.New(cfg.FL, fl.Deps{
		Store: deps.FLJobs, Engine: engine, Blobs: deps.Blobs, Models: deps.Models,
		Changes: changes, Clock: deps.Clock, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return &Core{
		cfg: cfg, log: log, engine: engine, link: l, fl: coord, blobs: deps.Blobs,
		conn: deps.MQTT, metrics: m, phases: deps.Phases, onPeer: deps.PropletObservers,
		ready: make(chan struct{}),
	}, nil
}

// Engine owns every task's lifecycle.
func (c *Core) Engine() *orchestration.Engine { return c.engine }

// Link is the MQTT link to the proplets.
func (c *Core) Link() *link.Link { return c.link }

// FL is the federated-learning coordinator.
func (c *Core) FL() *fl.Coordinator { return c.fl }

// Blobs is the blob store the core was built with.
func (c *Core) Blobs() *blobs.Store { return c.blobs }

// Ready is closed once Run recovered the stores' state, the link is
// subscribed and proplets are admitted: from then on the engine serves.
func (c *Core) Ready() <-chan struct{} { return c.ready }

// CheckReady says why the core cannot serve right now, for readiness
// probes: not yet recovered, or not connected to the broker.
func (c *Core) CheckReady() error {
	select {
	case <-c.ready:
	default:
		return errors.New("recovering")
	}
	if !c.link.Connected() {
		return errors.New("not connected to the MQTT broker")
	}
	return nil
}

// Run recovers the engine and then the coordinator from their stores,
// starts the link (bounded by Config.ConnectTimeout), admits proplets and
// runs the engine and the coordinator until ctx ends. It returns nil
// after ctx ended, once both stopped and the link is closed; any other
// error ends it early. A core runs once.
func (c *Core) Run(ctx context.Context) error {
	if !c.ran.CompareAndSwap(false, true) {
		return errors.New("core: already run")
	}
	defer c.link.Close()
	if err := c.engine.Recover(ctx); err != nil {
		return fmt.Errorf("core: recover tasks: %w", err)
	}
	defer c.metrics.Attach(metrics.Source{Proplets: c.engine, Link: c.link, Tasks: c.phases})()
	if err := c.fl.Recover(ctx); err != nil {
		return fmt.Errorf("core: recover federated jobs: %w", err)
	}
	// The coordinator stops with Run however Run ends.
	runCtx, stop := context.WithCancel(ctx)
	flDone := make(chan struct{})
	go func() {
		defer close(flDone)
		_ = c.fl.Run(runCtx)
	}()
	defer func() {
		stop()
		<-flDone
	}()

	connectCtx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	err := c.link.Start(connectCtx, reports{Engine: c.engine, fl: c.fl, onPeer: c.onPeer})
	cancel()
	if err != nil {
		return err
	}
	c.conn.Admit() // the link is subscribed: nothing a proplet sends can be lost now
	close(c.ready)
	err = c.engine.Run(runCtx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// reports is the link's sink: proplet reports go to the engine, FL
// updates to the coordinator, and membership changes to the observers.
type reports struct {
	*orchestration.Engine
	fl     *fl.Coordinator
	onPeer []func(string)
}

var (
	_ link.Sink   = reports{}
	_ link.FLSink = reports{}
	// The relay serves a proplet only the artifacts of its own tasks.
	_ link.Assignments = reports{}
)

func (r reports) PropletUp(ctx context.Context, p orchestration.Proplet) error {
	err := r.Engine.PropletUp(ctx, p)
	r.peer(p.ID)
	return err
}

func (r reports) PropletDown(ctx context.Context, id string) error {
	err := r.Engine.PropletDown(ctx, id)
	r.peer(id)
	return err
}

func (r reports) peer(id string) {
	for _, f := range r.onPeer {
		f(id)
	}
}

// FLUpdate records an update durably before the link acknowledges it.
func (r reports) FLUpdate(ctx context.Context, propletID string, u wire.FLUpdate) error {
	return r.fl.Receive(ctx, fl.Update{
		JobID: u.JobID, RoundID: u.RoundID, TaskID: u.TaskID, PropletID: propletID, Attempt: u.Attempt,
		NumSamples: u.NumSamples, Metrics: u.Metrics, Tensor: u.Tensor, Time: u.Time,
	})
}
