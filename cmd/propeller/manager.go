package main

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

// engineOptions tune the orchestration engine; both manager modes have them.
type engineOptions struct {
	policy           string
	heartbeatTimeout time.Duration
	defaultTimeout   time.Duration
	maxAttempts      int
	reconcileGrace   time.Duration
	idemWindow       time.Duration
}

func (o *engineOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.policy, "policy", string(orchestration.PolicyRoundRobin), "scheduling policy: round-robin or least-loaded")
	fs.DurationVar(&o.heartbeatTimeout, "heartbeat-timeout", 15*time.Second, "a proplet silent for this long is lost and its tasks are retried elsewhere")
	fs.DurationVar(&o.defaultTimeout, "default-timeout", 5*time.Minute, "deadline of a task attempt when the task sets none")
	fs.IntVar(&o.maxAttempts, "max-attempts", 3, "attempts of a task when the task sets none")
	fs.DurationVar(&o.reconcileGrace, "reconcile-grace", 10*time.Second, "an attempt its proplet's heartbeats have not listed for this long (and twice in a row) gets its start command again: a broker may have lost the start or the result")
	fs.DurationVar(&o.idemWindow, "idempotency-window", 24*time.Hour, "how long a create's Idempotency-Key is remembered: a retry within it gets the first result, a later one creates anew (REST creates on the standalone manager)")
}

func (o *engineOptions) config() orchestration.Config {
	return orchestration.Config{
		Policy:             orchestration.Policy(o.policy),
		HeartbeatTimeout:   o.heartbeatTimeout,
		DefaultTimeout:     o.defaultTimeout,
		DefaultMaxAttempts: o.maxAttempts,
		ReconcileGrace:     o.reconcileGrace,
		IdempotencyWindow:  o.idemWindow,
	}
}

// brokerOptions say how a manager reaches MQTT.
type brokerOptions struct {
	broker         string
	brokerUser     string
	brokerPassword string
	brokerCA       string
	mqttAddr       string
	prefix         string
}

// AddFlags adds the broker flags; brokerUsage says what --broker does in
// this mode, which differs: the standalone manager embeds a broker when
// --broker is empty, the operator only with --embedded-broker.
func (o *brokerOptions) AddFlags(fs *pflag.FlagSet, brokerUsage string) {
	fs.StringVar(&o.broker, "broker", "", brokerUsage)
	fs.StringVar(&o.brokerUser, "broker-username", wire.ManagerClientID, "MQTT username of the manager on an external broker")
	fs.StringVar(&o.brokerPassword, "broker-password", "", "MQTT password of the manager on an external broker")
	fs.StringVar(&o.brokerCA, "broker-ca", "", "CA bundle (PEM) that signed an external mqtts:// broker's certificate")
	fs.StringVar(&o.mqttAddr, "mqtt-addr", ":1883", "listen address of the embedded MQTT broker")
	fs.StringVar(&o.prefix, "prefix", wire.DefaultPrefix, "MQTT topic prefix")
}

// registryOptions say how a manager authenticates to OCI registries.
type registryOptions struct {
	// registryAuth is a Docker config.json, or empty.
	registryAuth string
}

func (o *registryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.registryAuth, "registry-auth", "", "credentials for OCI registries (pulling oci:// modelRefs, pushing checkpoints): a Docker config.json ({\"auths\":{\"host\":{\"auth\":\"base64(user:password)\"}}}), e.g. a kubernetes.io/dockerconfigjson Secret mounted as a file; read again on every pull and push, so a rotated Secret needs no restart; registries it does not name are accessed anonymously")
}

type standaloneOptions struct {
	*globalOptions
	engineOptions
	brokerOptions
	registryOptions
	dataDir        string
	httpAddr       string
	tlsCert        string
	tlsKey         string
	tlsClientCA    string
	maxUploadBytes int64
	pprofAddr      string
	corsOrigins    []string

	requireCredentials bool
}

func defaultDataDir() string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".propeller")
	}
	return ".propeller"
}

func (o *standaloneOptions) AddFlags(fs *pflag.FlagSet) {
	o.engineOptions.AddFlags(fs)
	o.brokerOptions.AddFlags(fs, "external MQTT broker, mqtt://host:1883 or mqtts://host:8883; empty: embed one on --mqtt-addr")
	o.registryOptions.AddFlags(fs)
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "state directory: bbolt database, tokens, uploaded modules")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7070", "listen address of the REST API")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "certificate (PEM) for HTTPS and the embedded broker's TLS listener")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) matching --tls-cert")
	fs.StringVar(&o.tlsClientCA, "tls-client-ca", "", "CA bundle (PEM): proplets may log in to the embedded broker with a client certificate it signed, its common name being the proplet id (mutual TLS; needs --tls-cert)")
	fs.Var(newQuantityFlag(&o.maxUploadBytes, 32<<20), "max-upload-bytes", "largest WASM module accepted over REST, bytes or a quantity (32Mi)")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiling (net/http/pprof) on this address; unauthenticated, keep it on loopback")
	fs.StringSliceVar(&o.corsOrigins, "cors-origin", nil, "let web pages from these origins call the REST API (CORS), e.g. https://dash.example.com; repeat or comma-separate; '*' allows any; default: none")
	fs.BoolVar(&o.requireCredentials, "require-proplet-credentials", false, "refuse the join token: proplets log in only with a secret from 'propeller proplet credentials create' (embedded broker)")
}

func newStandaloneCommand(g *globalOptions, r runners) *cobra.Command {
	o := &standaloneOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "standalone",
		Short: "Run the manager on a bare host: REST API, MQTT, bbolt state",
		Long: `Run the manager on a bare host.

It stores state in a bbolt file under --data-dir, serves the REST API on
--http-addr and, unless --broker names an external MQTT broker, embeds a
broker on --mqtt-addr. On first start it writes <data-dir>/api-token (the
REST bearer token) and <data-dir>/join-token (the proplets' credential).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.resolveFlags(cmd); err != nil {
				return err
			}
			return r.standalone(cmd, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

type operatorOptions struct {
	*globalOptions
	engineOptions
	brokerOptions
	registryOptions
	kubeconfig     string
	embeddedBroker bool
	metricsAddr    string
	healthAddr     string
	leaderElect    bool
	namespace      string
	allNamespaces  bool
	unserved       time.Duration
	joinToken      string
	tlsCert        string
	tlsKey         string
	dataDir        string
	// checkpointRegistry is oci://host[:port]/repo, or empty.
	checkpointRegistry string
}

func (o *operatorOptions) AddFlags(fs *pflag.FlagSet) {
	o.engineOptions.AddFlags(fs)
	o.brokerOptions.AddFlags(fs, "external MQTT broker, mqtt://host:1883 or mqtts://host:8883; required unless --embedded-broker")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file to reach the API server with (its current context); empty: $KUBECONFIG, else the in-cluster service account, else ~/.kube/config")
	fs.BoolVar(&o.embeddedBroker, "embedded-broker", false, "embed an MQTT broker on --mqtt-addr instead of connecting to --broker")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "0", "listen address of the Prometheus metrics endpoint, e.g. :8080: plain, unauthenticated HTTP, so opt-in; 0 disables it")
	fs.StringVar(&o.healthAddr, "health-addr", ":8081", "listen address of the health probes")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader so only one replica orchestrates")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace whose WasmTasks the operator runs; it also holds the proplet and federated-learning records, FederatedJobs and the leader lease")
	fs.BoolVar(&o.allNamespaces, "all-namespaces", false, "also run the WasmTasks and PropletGroups of every other namespace (FederatedJobs stay in --namespace)")
	fs.DurationVar(&o.unserved, "unserved-interval", 15*time.Second, "how often to look for WasmTasks applied in a namespace the operator does not serve; one still not admitted by any operator a look later gets a Warning event (NamespaceNotServed) saying where tasks run; 0 turns it off (it lists wasmtasks in every namespace)")
	fs.StringVar(&o.joinToken, "join-token", "", "proplets' credential on the embedded broker (--embedded-broker); empty: the token in the Secret propeller-join-token (key token) of --namespace, which the operator creates with a random token if it is absent")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "certificate (PEM) of the embedded broker: it then speaks MQTT over TLS only, on --mqtt-addr (8883 by convention)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) matching --tls-cert")
	fs.StringVar(&o.dataDir, "data-dir", "", "federated-learning blob store (models, updates); mount a volume here to keep them across restarts (default: a temporary directory)")
	fs.StringVar(&o.checkpointRegistry, "checkpoint-registry", "", "also push every FL checkpoint to this OCI registry, oci://host[:port]/repo, tagged <job>-round-<n> (plain HTTP for loopback registries only); proplets still fetch models from the --data-dir store")
	o.registryOptions.AddFlags(fs)
}

func newOperatorCommand(g *globalOptions, r runners) *cobra.Command {
	o := &operatorOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the manager as a Kubernetes operator (CRDs in propeller.absmach.io/v1alpha1)",
		Long: `Run the manager as a Kubernetes operator (CRDs in propeller.absmach.io/v1alpha1).

It reaches the API server with --kubeconfig when set, else the file(s) in
$KUBECONFIG, else the pod's service account, else ~/.kube/config. It runs
the WasmTasks of --namespace (of every namespace with --all-namespaces) and
reaches proplets through an external MQTT broker (--broker) or one it
embeds (--embedded-broker, listening on --mqtt-addr). Proplets log in to the
embedded broker with --join-token or, without it, with the token in the
Secret propeller-join-token (key token) of --namespace, which the operator
creates with a random token on first start:

  kubectl -n NAMESPACE get secret propeller-join-token -o jsonpath='{.data.token}' | base64 -d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.resolveFlags(cmd); err != nil {
				return err
			}
			return r.operator(cmd, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runOperator(cmd *cobra.Command, o *operatorOptions) error {
	log, err := o.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	switch {
	case o.embeddedBroker && o.broker != "":
		return errors.New("--embedded-broker and --broker exclude each other")
	case !o.embeddedBroker && o.broker == "":
		return errors.New("the operator needs --broker URL or --embedded-broker")
	}
	return startOperator(cmd.Context(), o, log)
}
