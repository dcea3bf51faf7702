package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/orchestration/fl"
)

// pushTimeout bounds one checkpoint push, so an unreachable registry does
// not hold the FederatedJob reconciler (rounds run in the coordinator and
// never wait for it).
const pushTimeout = 30 * time.Second

// Condition reasons of ModelCheckpoint's Pushed condition.
const (
	ReasonPushed     = "Pushed"
	ReasonPushFailed = "PushFailed"
)

// checkpointPusher copies checkpoints from the operator's blob store to an
// OCI registry. blobs is set by the leader before the controllers run.
type checkpointPusher struct {
	reg   ocipush.Registry
	blobs fl.Blobs
}

// checkpointTag is "<job>-round-<n>".
func checkpointTag(job string, round int) string { return fmt.Sprintf("%s-round-%d", job, round) }

func (p *checkpointPusher) push(ctx context.Context, job string, cp fl.Checkpoint) (ocipush.Result, error) {
	if p.blobs == nil {
		return ocipush.Result{}, errors.New("blob store not open")
	}
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	data, err := p.blobs.Blob(ctx, cp.Digest)
	if err != nil {
		return ocipush.Result{}, fmt.Errorf("read %s: %w", cp.Digest, err)
	}
	tag := checkpointTag(job, cp.Round)
	res, err := ocipush.Push(ctx, p.reg, tag, data, ocipush.Options{
		Annotations: map[string]string{
			"org.opencontainers.image.title": tag + ".safetensors",
			"io.propeller.fl.job":            job,
			"io.propeller.fl.round":          fmt.Sprint(cp.Round),
			"io.propeller.fl.algorithm":      cp.Algorithm,
		},
	})
	if err != nil {
		return ocipush.Result{}, err
	}
	if res.Layer != cp.Digest {
		return ocipush.Result{}, fmt.Errorf("pushed layer %s, checkpoint is %s", res.Layer, cp.Digest)
	}
	return res, nil
}

// pushCheckpoint pushes mc's model once, when a registry is configured and
// mc has no Pushed condition yet, and records the outcome in mc.Status
// (the caller patches it). A failed push is recorded (Pushed=False,
// PushFailed) and not retried; it never fails the round, whose model is in
// the blob store either way.
func (r *FederatedJobReconciler) pushCheckpoint(ctx context.Context, obj *v1.FederatedJob, mc *v1.ModelCheckpoint, cp fl.Checkpoint) error {
	if r.Push == nil || meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionPushed) != nil {
		return nil
	}
	res, err := r.Push.push(ctx, obj.Name, cp)
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // shutting down: try again on the next leader
	}
	cond := metav1.Condition{
		Type: v1.ConditionPushed, Status: metav1.ConditionTrue, Reason: ReasonPushed,
		Message: "pushed to " + res.Ref, ObservedGeneration: mc.Generation,
	}
	if err != nil {
		msg := fmt.Sprintf("push to %s failed: %v", r.Push.reg, err)
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonPushFailed, msg
		r.Recorder.Eventf(mc, nil, "Warning", ReasonPushFailed, "Push", "%s", msg)
	} else {
		mc.Status.OCIRef = res.Ref
	}
	meta.SetStatusCondition(&mc.Status.Conditions, cond)
	return nil
}
