package operator

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// PropletGroupReconciler keeps a PropletGroup's status in step with the
// engine's proplets. Membership is computed, never stored elsewhere: the
// engine learns proplets from the broker, and the group only reports them.
type PropletGroupReconciler struct {
	Client client.Client
	Engine *orchestration.Engine
	Ready  <-chan struct{}
	// Changes fires when a proplet joins or leaves, so groups follow at
	// once instead of at the next resync.
	Changes <-chan event.GenericEvent
	// Resync bounds how stale running counts get; 0 means 10s.
	Resync time.Duration
}

// Reconcile recomputes one group's members and capacity.
func (r *PropletGroupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	select {
	case <-r.Ready:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	g := &v1.PropletGroup{}
	if err := r.Client.Get(ctx, req.NamespacedName, g); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := g.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(before.Status, g.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, g, client.MergeFrom(before)); err != nil {
			retErr = client.IgnoreNotFound(err)
		}
	}()
	proplets, err := r.Engine.Proplets(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.reconcileMembers(g, proplets)
	r.reconcilePhase(g)
	return ctrl.Result{RequeueAfter: r.resync()}, nil
}

func (r *PropletGroupReconciler) resync() time.Duration {
	if r.Resync > 0 {
		return r.Resync
	}
	return 10 * time.Second
}

// member reports whether p belongs to g: it is listed in propletIds (when
// the group lists ids) and carries the selector's labels (when the group
// has a selector). With both, both hold, exactly as for the tasks that
// target the group (see WasmTaskReconciler.reconcileAdmit).
func member(g *v1.PropletGroup, p *orchestration.Proplet) bool {
	if len(g.Spec.PropletIDs) == 0 && len(g.Spec.Selector) == 0 {
		return false
	}
	if len(g.Spec.PropletIDs) > 0 && !slices.Contains(g.Spec.PropletIDs, p.ID) {
		return false
	}
	return p.Matches(g.Spec.Selector)
}

func (r *PropletGroupReconciler) reconcileMembers(g *v1.PropletGroup, proplets []orchestration.Proplet) {
	st := &g.Status
	st.Members = nil
	st.Total, st.Alive, st.Capacity, st.Free = 0, 0, 0, 0
	for i := range proplets {
		p := &proplets[i]
		if !member(g, p) {
			continue
		}
		m := v1.PropletMember{
			ID: p.ID, Alive: p.Alive, Slots: int32(p.Slots), Running: int32(len(p.Running)),
			Runtime: p.Runtime, Version: p.Version,
		}
		if !p.LastSeen.IsZero() {
			// Minutes are enough for a human, and keep the status from
			// changing on every heartbeat.
			ls := metav1.NewTime(p.LastSeen.Truncate(time.Minute))
			m.LastSeen = &ls
		}
		st.Members = append(st.Members, m)
		st.Total++
		if p.Alive {
			st.Alive++
			st.Capacity += m.Slots
			st.Free += max(0, m.Slots-m.Running)
		}
	}
}

func (r *PropletGroupReconciler) reconcilePhase(g *v1.PropletGroup) {
	st := &g.Status
	want := max(g.Spec.MinMembers, 1)
	cond := metav1.Condition{Type: v1.ConditionReady, ObservedGeneration: g.Generation}
	switch {
	case st.Alive == 0:
		st.Phase = v1.GroupEmpty
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "NoLiveMembers", "no member proplet is alive"
	case st.Alive < want:
		st.Phase = v1.GroupDegraded
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "TooFewMembers", "fewer live members than minMembers"
	default:
		st.Phase = v1.GroupReady
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "EnoughMembers", "live members reach minMembers"
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	st.ObservedGeneration = g.Generation
}

// SetupWithManager watches groups and proplet changes.
func (r *PropletGroupReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).For(&v1.PropletGroup{}).Named("propletgroup")
	if r.Changes != nil {
		c := mgr.GetClient()
		b = b.WatchesRawSource(source.Channel(r.Changes, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, _ client.Object) []ctrl.Request {
				list := &v1.PropletGroupList{}
				if err := c.List(ctx, list); err != nil {
					return nil
				}
				out := make([]ctrl.Request, 0, len(list.Items))
				for i := range list.Items {
					out = append(out, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
				}
				return out
			})))
	}
	return b.Complete(r)
}
