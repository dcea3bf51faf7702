package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/manager/core"
	"github.com/absmach/propeller/manager/metrics"
	"github.com/absmach/propeller/manager/mqttconn"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/orchestration"
)

// Config configures the operator. It is passed by value.
type Config struct {
	// Rest reaches the API server; nil means the kubeconfig file at
	// Kubeconfig, or when that is empty $KUBECONFIG, the in-cluster
	// service account, ~/.kube/config, in that order.
	Rest       *rest.Config
	Kubeconfig string
	// Namespace holds the WasmTasks the operator runs, its proplet and
	// federated-learning records, FederatedJobs and the leader lease.
	// Required.
	Namespace string
	// AllNamespaces also serves WasmTasks and PropletGroups of every other
	// namespace (one engine and one set of proplets for all; task ids are
	// "<namespace>/<name>" there). FederatedJobs stay in Namespace.
	AllNamespaces bool

	// Broker is an external broker URL; empty embeds one on MQTTAddr.
	Broker         string
	BrokerUser     string
	BrokerPassword string
	BrokerCA       string
	MQTTAddr       string
	// JoinToken is the proplets' credential on the embedded broker; empty
	// means the one in the Secret JoinTokenSecret, created if absent.
	JoinToken string
	Prefix    string
	// TLSCert and TLSKey (PEM files) make the embedded broker speak TLS
	// only, on MQTTAddr.
	TLSCert, TLSKey string

	Engine orchestration.Config
	// DataDir holds the FL blob store (models, updates); give it a volume
	// to keep models across restarts. Empty means a temporary directory.
	DataDir string
	// CheckpointRegistry, "oci://host[:port]/repo", makes the operator
	// also push every checkpoint there as an OCI artifact tagged
	// <job>-round-<n>, recorded in the ModelCheckpoint's status.ociRef.
	// The blob store stays what proplets fetch from. Plain HTTP is used
	// for loopback registries only. Empty disables pushing.
	CheckpointRegistry string
	// RegistryAuth is a Docker config.json with registry credentials (a
	// kubernetes.io/dockerconfigjson Secret's .dockerconfigjson, mounted
	// as a file), for checkpoint pushes and for pulling oci:// modelRefs.
	// It must be readable at start, and hold credentials for the
	// checkpoint registry's host if one is set; it is read again on every
	// push and pull, so a rotated Secret needs no restart. Empty means
	// anonymous access.
	RegistryAuth string

	// MetricsAddr and HealthAddr are the metrics and probe listeners; "0"
	// disables one.
	MetricsAddr string
	HealthAddr  string
	// UnservedInterval, when positive, makes the leader look this often for
	// WasmTasks in namespaces it does not serve and tell them so with an
	// event (see unservedWatch); 0 turns that off.
	UnservedInterval time.Duration
	// LeaderElection makes only one replica orchestrate.
	LeaderElection          bool
	LeaderElectionNamespace string

	Logger *slog.Logger
	// Ready, when set, is called with the MQTT address once the engine
	// serves, so tests can use port 0.
	Ready func(mqttAddr string)
	// Built, when set, receives the core the leader built, before it runs.
	Built func(*core.Core)
}

// How long the operator waits before paying an API write for something a
// task usually leaves within moments. Every write costs the API server as
// much as the task's own create; see docs/crds.md, "API cost per task".
const (
	// heldStatus holds back the status writes of admission and Running.
	heldStatus = time.Second
	// heldProgress holds back Scheduled and Running events, and the
	// stop-task finalizer, for tasks that finish sooner.
	heldProgress = 2 * time.Second
)

// engineMetrics are the engine metrics (manager/metrics) on
// controller-runtime's registry, served by the manager's metrics server
// next to controller-runtime's own. They are registered once per process
// and read whichever engine leads at the moment: Run may be called several
// times in one process (a lost and regained lease, tests), and registering
// the same names twice on the global registry would fail.
var engineMetrics = metrics.New()

// LeaderElectionID names the lease the replicas compete for.
const LeaderElectionID = "propeller-operator.propeller.absmach.io"

// Run serves until ctx ends. Everything that orchestrates (the MQTT link,
// the engine, the controllers) runs only on the elected leader; a standby
// replica serves health and metrics and waits.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Namespace == "" {
		return errors.New("operator: namespace is required")
	}
	if _, err := brokerTLS(cfg); err != nil {
		return err
	}
	if cfg.RegistryAuth != "" && cfg.CheckpointRegistry == "" {
		if err := ocipush.CheckDockerConfig(cfg.RegistryAuth); err != nil {
			return fmt.Errorf("operator: registry auth: %w", err)
		}
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		var err error
		if dataDir, err = os.MkdirTemp("", "propeller-operator-"); err != nil {
			return err
		}
	}
	blobStore, err := blobs.Open(filepath.Join(dataDir, "blobs"))
	if err != nil {
		return err
	}
	var pusher *checkpointPusher
	if cfg.CheckpointRegistry != "" {
		if pusher, err = newCheckpointPusher(cfg.CheckpointRegistry, cfg.RegistryAuth, blobStore); err != nil {
			return fmt.Errorf("operator: %w", err)
		}
	}
	restCfg := cfg.Rest
	if restCfg == nil {
		if restCfg, err = restConfig(cfg.Kubeconfig); err != nil {
			return fmt.Errorf("kubernetes config: %w", err)
		}
	}
	restCfg = rest.CopyConfig(restCfg)
	// The engine writes a few times per task; client-side throttling would
	// cap throughput far below what the API server takes (it has its own
	// priority and fairness).
	restCfg.QPS, restCfg.Burst = 1000, 2000

	ctrl.SetLogger(logrFromSlog(log))
	if err := engineMetrics.Register(ctrlmetrics.Registry); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mgr, err := ctrl.NewManager(restCfg, manager.Options{
		// Its own logger, not only the process-wide one: each operator's
		// controllers log where its Config says.
		Logger:                  logrFromSlog(log),
		Scheme:                  Scheme(),
		Cache:                   cacheOptions(cfg),
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.HealthAddr,
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: cmpOr(cfg.LeaderElectionNamespace, cfg.Namespace),
		// Stepping down must stop orchestration at once: another
		// replica is about to take over the same tasks.
		LeaderElectionReleaseOnCancel: true,
		// Controller names are metric labels, unique per process; an
		// in-process restart (tests, a lost and regained lease handled by
		// the caller) builds them again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	// The store reads the API server directly: an engine update must see
	// the latest version, which a cache may not have yet.
	direct, err := client.New(restCfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	if err := resolveJoinToken(ctx, direct, &cfg, log); err != nil {
		return err
	}
	store := NewStore(direct, cfg.Namespace, NewRoundOwners(direct, cfg.Namespace))
	if cfg.AllNamespaces {
		store.AllNamespaces()
	}
	// Admission and Running are superseded within moments for most
	// tasks; holding them back saves up to two writes per task.
	store.Coalesce(heldStatus)
	rec := mgr.GetEventRecorder("propeller-operator")
	// Tasks still in flight after heldProgress get the stop-task
	// finalizer (and their progress event); the rest never pay for it.
	slow := make(chan event.TypedGenericEvent[*v1.WasmTask], 256)
	refs := taskRefs{store: store, cache: mgr.GetCache(), direct: direct, log: log}
	events := newTransitions(rec, refs.resolve, heldProgress, func(id string) {
		k := store.Key(id)
		select {
		case slow <- event.TypedGenericEvent[*v1.WasmTask]{Object: &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}}:
		case <-ctx.Done():
		}
	})
	if err := addUnservedWatch(mgr, direct, rec, cfg, log); err != nil {
		return err
	}
	jobs := NewFLStore(direct, cfg.Namespace)
	o := &orchestrator{cfg: cfg, log: log, mgr: mgr, store: store, flStore: jobs, blobs: blobStore, direct: direct,
		recorder: rec, events: events, slow: slow,
		tasks: cachedPhases{c: mgr.GetClient(), store: store}}
	if err := mgr.Add(o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("mqtt", o.readyz); err != nil {
		return err
	}
	// The controllers that need no core; the leader mounts the others on
	// the core it builds.
	if err := (&TrainingRoundReconciler{Client: mgr.GetClient(), Recorder: rec}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&ModelCheckpointReconciler{
		Client: mgr.GetClient(), Jobs: jobs, Recorder: rec, Push: pusher,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	log.Info("operator starting", "namespace", cfg.Namespace, "all_namespaces", cfg.AllNamespaces, "leader_election", cfg.LeaderElection)
	return mgr.Start(ctx)
}

// cacheOptions caches the operator's namespace, or every namespace.
func cacheOptions(cfg Config) cache.Options {
	if cfg.AllNamespaces {
		return cache.Options{}
	}
	return cache.Options{DefaultNamespaces: map[string]cache.Config{cfg.Namespace: {}}}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// orchestrator is the leader-only runnable. On winning the lease it opens
// the MQTT connection (the embedded broker listens on the leader only),
// builds the core over the operator's stores, mounts the controllers that
// drive the core's engine and FL coordinator, and runs the core until the
// lease or the process ends. A standby replica builds none of it.
type orchestrator struct {
	cfg     Config
	log     *slog.Logger
	mgr     ctrl.Manager
	store   *Store
	flStore *FLStore
	// direct reads the API server without a cache (the proplet
	// credentials Secret).
	direct   client.Client
	blobs    *blobs.Store
	recorder events.EventRecorder
	events   *transitions
	slow     chan event.TypedGenericEvent[*v1.WasmTask]
	// tasks counts WasmTasks by phase for propeller_tasks.
	tasks metrics.PhaseCounter
	// leading is the core serving while this replica leads, for readyz.
	leading atomic.Pointer[core.Core]
}

// cachedPhases counts the namespace's WasmTasks by phase from the
// manager's informer cache, which the WasmTask controller keeps anyway:
// a scrape lists memory, never the API server (the CRD store has no phase
// index). A task not yet admitted (no phase) counts as Pending.
type cachedPhases struct {
	c     client.Reader
	store *Store
}

func (p cachedPhases) CountByPhase(ctx context.Context) (map[orchestration.Phase]int, error) {
	list := &v1.WasmTaskList{}
	// Read-only: the objects are counted, not kept or changed.
	if err := p.c.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	counts := make(map[orchestration.Phase]int, len(orchestration.Phases))
	for i := range list.Items {
		if !p.store.Serves(list.Items[i].Namespace) {
			continue
		}
		ph := orchestration.Phase(list.Items[i].Status.Phase)
		if ph == "" {
			ph = orchestration.PhasePending
		}
		counts[ph]++
	}
	return counts, nil
}

func (o *orchestrator) NeedLeaderElection() bool { return true }

func (o *orchestrator) readyz(*http.Request) error {
	c := o.leading.Load()
	if c == nil {
		return nil // a standby replica is ready to take over
	}
	return c.CheckReady()
}

// Start runs until ctx ends (leadership lost or shutdown).
func (o *orchestrator) Start(ctx context.Context) error {
	cfg := o.cfg
	secret, err := broker.NewSecret()
	if err != nil {
		return err
	}
	// The embedded broker enrolls proplets into a Secret, read afresh by
	// every leader (see PropletCredentialsSecret).
	var (
		creds    broker.Credentials
		enroller broker.Enroller
	)
	if cfg.Broker == "" {
		sc, err := openSecretCredentials(ctx, o.direct, cfg.Namespace, cfg.JoinToken)
		if err != nil {
			return fmt.Errorf("operator: proplet credentials: %w", err)
		}
		creds, enroller = sc, sc
	}
	// The same broker decision as the standalone manager: embedded unless
	// an external broker is named.
	serverTLS, err := brokerTLS(cfg)
	if err != nil {
		return err
	}
	conn, err := mqttconn.Open(mqttconn.Config{
		Broker: cfg.Broker, User: cfg.BrokerUser, Password: cfg.BrokerPassword, CAFile: cfg.BrokerCA,
		Addr: cfg.MQTTAddr, TLS: serverTLS, JoinToken: cfg.JoinToken, ManagerSecret: secret,
		Credentials: creds, Enroller: enroller, Prefix: cfg.Prefix, Logger: o.log,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	members := make(chan event.GenericEvent, 1)
	c, err := core.New(core.Config{Engine: cfg.Engine}, core.Deps{
		Tasks: o.store, FLJobs: o.flStore, Blobs: o.blobs, MQTT: conn,
		Models: ocipush.Models{AuthFile: cfg.RegistryAuth}, Logger: o.log,
		Metrics: engineMetrics, Phases: o.tasks,
		TaskObservers:    []func(orchestration.Task){o.events.observe},
		PropletObservers: []func(string){func(string) { notify(members) }},
	})
	if err != nil {
		return err
	}
	if cfg.Built != nil {
		cfg.Built(c)
	}
	if err := o.mount(c, members); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		return err
	}
	o.leading.Store(c)
	defer o.leading.CompareAndSwap(c, nil)
	if cfg.Ready != nil {
		cfg.Ready(conn.Addr)
	}
	return <-done
}

// mount adds the controllers that drive the core to the manager. They
// wait for the core's Ready before their first reconcile.
func (o *orchestrator) mount(c *core.Core, members <-chan event.GenericEvent) error {
	mgr := o.mgr
	if err := (&WasmTaskReconciler{
		Client: mgr.GetClient(), Engine: c.Engine(), Store: o.store,
		Recorder: o.recorder, Ready: c.Ready(), Slow: o.slow, Gone: o.events.forget,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&PropletGroupReconciler{
		Client: mgr.GetClient(), Engine: c.Engine(), Ready: c.Ready(), Changes: members,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&FederatedJobReconciler{
		Client: mgr.GetClient(), Jobs: o.flStore, FL: c.FL(), Recorder: o.recorder, Ready: c.Ready(),
	}).SetupWithManager(mgr)
}

// notify tells the PropletGroup controller that membership may have
// changed.
func notify(members chan<- event.GenericEvent) {
	select {
	case members <- event.GenericEvent{Object: &v1.PropletGroup{}}:
	default: // one pending notification covers every change
	}
}
