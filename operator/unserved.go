package operator

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	v1 "github.com/absmach/propeller/api/v1alpha1"
)

// ReasonNamespaceNotServed is the reason of the Warning event a WasmTask
// gets in a namespace the operator does not serve.
const ReasonNamespaceNotServed = "NamespaceNotServed"

// unservedPage is the page size of a sweep's list.
const unservedPage = 500

// unservedWatch tells a WasmTask applied in a namespace the operator does
// not serve that it is not served, with a Warning event on the object;
// otherwise its status stays blank and nothing says why. On the leader,
// every interval, it lists the WasmTasks of every namespace that nobody
// admitted (status.phase is empty: a selectable field, so the API server
// filters and a sweep costs one list of what it returns, metadata only).
// A task outside the operator's namespace found so in two sweeps in a row
// gets the event, once: the grace of one interval leaves it to another
// operator that serves its namespace (one operator per namespace is a
// supported layout) to admit it first.
//
// It needs list of wasmtasks in every namespace and create of events
// there, which the ClusterRole in deploy/rbac grants; refused those, it
// logs a warning and tries again next interval.
type unservedWatch struct {
	c        client.Reader
	rec      events.EventRecorder
	ns       string
	interval time.Duration
	log      *slog.Logger

	// seen are the tasks the last sweep found unadmitted, told those that
	// got the event, by uid; both keep only tasks the last sweep listed.
	seen, told map[types.UID]bool
	failing    bool
}

// addUnservedWatch adds the watch to mgr unless the operator serves every
// namespace or cfg turns it off.
func addUnservedWatch(mgr manager.Manager, c client.Reader, rec events.EventRecorder, cfg Config, log *slog.Logger) error {
	if cfg.AllNamespaces || cfg.UnservedInterval <= 0 {
		return nil
	}
	return mgr.Add(&unservedWatch{
		c: c, rec: rec, ns: cfg.Namespace, interval: cfg.UnservedInterval, log: log,
		seen: map[types.UID]bool{}, told: map[types.UID]bool{},
	})
}

func (u *unservedWatch) NeedLeaderElection() bool { return true }

func (u *unservedWatch) Start(ctx context.Context) error {
	tick := time.NewTicker(u.interval)
	defer tick.Stop()
	for {
		u.sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// sweep lists the unadmitted WasmTasks and tells those past their grace.
func (u *unservedWatch) sweep(ctx context.Context) {
	seen, told := map[types.UID]bool{}, map[types.UID]bool{}
	next := ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(v1.GroupVersion.WithKind("WasmTaskList"))
		err := u.c.List(ctx, list, client.Limit(unservedPage), client.Continue(next),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("status.phase", "")})
		if err != nil {
			if ctx.Err() == nil {
				u.failed(err)
			}
			return // the state of the last complete sweep stays
		}
		for i := range list.Items {
			m := &list.Items[i]
			if m.Namespace == u.ns {
				continue
			}
			switch {
			case u.told[m.UID]:
				told[m.UID] = true
			case u.seen[m.UID]:
				u.tell(m)
				told[m.UID] = true
			default:
				seen[m.UID] = true
			}
		}
		if next = list.Continue; next == "" {
			break
		}
	}
	if u.failing {
		u.failing = false
		u.log.Info("listing WasmTasks of every namespace works again")
	}
	u.seen, u.told = seen, told
}

func (u *unservedWatch) tell(m *metav1.PartialObjectMetadata) {
	ref := &v1.WasmTask{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name, UID: m.UID}}
	ref.SetGroupVersionKind(v1.GroupVersion.WithKind("WasmTask"))
	u.rec.Eventf(ref, nil, "Warning", ReasonNamespaceNotServed, "Admit", "%s", notServedMessage(u.ns))
}

// notServedMessage says where WasmTasks run.
func notServedMessage(ns string) string {
	return fmt.Sprintf("not served: the operator runs the WasmTasks of namespace %q only; apply it in %q, or run the operator with --all-namespaces", ns, ns)
}

func (u *unservedWatch) failed(err error) {
	if u.failing {
		u.log.Debug("listing WasmTasks of every namespace failed", "err", err)
		return
	}
	u.failing = true
	u.log.Warn("cannot list WasmTasks of every namespace; WasmTasks applied outside the operator's namespace are not told they are not served", "namespace", u.ns, "err", err)
}
