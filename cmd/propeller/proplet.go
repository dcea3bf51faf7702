package main

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/absmach/propeller/api/wire"
)

type propletOptions struct {
	*globalOptions
	broker            string
	id                string
	token             string
	labels            map[string]string
	slots             int
	cacheDir          string
	cacheBytes        int64
	memoryPages       uint32
	defaultTimeout    time.Duration
	heartbeatInterval time.Duration
	prefix            string
	tlsCA             string
	tlsCert           string
	tlsKey            string
	ociPlainHTTP      string
	pprofAddr         string
	execLog           string
}

func (o *propletOptions) AddFlags(fs *pflag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&o.broker, "broker", "mqtt://127.0.0.1:1883", "MQTT broker, mqtt://host:1883 or mqtts://host:8883")
	fs.StringVar(&o.id, "id", host, "proplet id: letters, digits, '-', '_' and '.'")
	fs.StringVar(&o.token, "token", "", "credential: the manager's join token (enrolls this proplet: the secret it is issued is kept in <cache-dir>/state/credential and used from then on) or a per-proplet secret; not needed once enrolled or with --tls-cert")
	fs.StringToStringVar(&o.labels, "labels", nil, "labels that tasks select on, k=v,k2=v2")
	fs.IntVar(&o.slots, "slots", 4, "tasks run at the same time")
	fs.StringVar(&o.cacheDir, "cache-dir", propletStateDir(os.Geteuid()), "cache of modules, compiled code and undelivered events; one proplet per dir ($STATE_DIRECTORY, else ~/.local/state/propeller, or /var/lib/propeller as root)")
	fs.Var(newQuantityFlag(&o.cacheBytes, 512<<20), "cache-bytes", "size bound of the module cache, bytes or a quantity (512Mi)")
	fs.Uint32Var(&o.memoryPages, "memory-pages", 4096, "largest linear memory a module may grow to, in 64 KiB pages (4096 = 256 MiB)")
	fs.DurationVar(&o.defaultTimeout, "default-timeout", 5*time.Minute, "deadline of a task that sets none")
	fs.DurationVar(&o.heartbeatInterval, "heartbeat-interval", 5*time.Second, "how often liveness is reported")
	fs.StringVar(&o.prefix, "prefix", wire.DefaultPrefix, "MQTT topic prefix")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "CA bundle (PEM) that signed the broker's certificate")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (PEM) for mutual TLS; its common name must be --id, and it replaces --token")
	fs.StringVar(&o.tlsKey, "tls-key", "", "client key (PEM) for mutual TLS")
	fs.StringVar(&o.ociPlainHTTP, "oci-plain-http", "loopback", "when oci:// registries may be reached without TLS: never, loopback or always")
	fs.StringVar(&o.execLog, "exec-log", "", "append a JSON line to this file when each module starts and ends (task, attempt, time, reason); evidence for audits and the chaos suite")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiling (net/http/pprof) on this address; unauthenticated, keep it on loopback")
}

// propletStateDir is the default --cache-dir for a process of user euid:
// where a proplet keeps what must outlive a reboot:
// its outbox of undelivered results above all, so never under /tmp (wiped
// at boot, private per unit under systemd's PrivateTmp). systemd names the
// unit's StateDirectory= in $STATE_DIRECTORY (colon-separated when the
// unit has several; the first is ours); otherwise the XDG state dir, or
// /var/lib for root. Empty only without a home directory, which
// runProplet reports.
func propletStateDir(euid int) string {
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d
	}
	if euid == 0 {
		return "/var/lib/propeller"
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "propeller")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "propeller")
	}
	return ""
}

func newPropletCommand(g *globalOptions, r runners) *cobra.Command {
	o := &propletOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "proplet",
		Short: "Run the worker that executes WASM tasks sent over MQTT",
		Long: `Run a proplet: it joins the broker as --id with --token, announces its
--labels and --slots, and runs the tasks the manager sends it with wazero,
each under a deadline and a memory limit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.resolveFlags(cmd); err != nil {
				return err
			}
			return r.proplet(cmd, o)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.AddCommand(newPropletListCommand(g), newPropletGetCommand(g), newPropletDeleteCommand(g), newPropletCredentialsCommand(g))
	return cmd
}
