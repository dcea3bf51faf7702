package operator

import (
	"context"
	"fmt"
	"time"

	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/orchestration/fl"
)

// pushTimeout bounds one checkpoint push, so an unreachable registry does
// not hold the ModelCheckpoint reconciler for long (rounds run in the
// coordinator and never wait for it).
const pushTimeout = 30 * time.Second

// Condition reasons of ModelCheckpoint's Pushed condition.
const (
	ReasonPushed     = "Pushed"
	ReasonPushFailed = "PushFailed"
)

// checkpointPusher copies checkpoints from the operator's blob store to an
// OCI registry.
type checkpointPusher struct {
	reg ocipush.Registry
	// auth is the registry credentials file (--registry-auth),
	// a Docker config.json; empty pushes anonymously. It is read again on
	// every push attempt, so a rotated Secret (which Kubernetes updates in
	// place in the pod) is used from the next attempt on, no restart.
	auth  string
	blobs fl.Blobs
}

// newCheckpointPusher parses the registry name and checks the
// credentials file once, so a missing, unreadable or malformed file (or
// one without credentials for the registry's host) stops the operator at
// start rather than failing every push.
func newCheckpointPusher(registry, authFile string, blobs fl.Blobs) (*checkpointPusher, error) {
	reg, err := ocipush.ParseRegistry(registry)
	if err != nil {
		return nil, fmt.Errorf("checkpoint registry: %w", err)
	}
	if authFile != "" {
		if _, err := ocipush.DockerConfigCredential(authFile, reg); err != nil {
			return nil, fmt.Errorf("registry auth: %w", err)
		}
	}
	return &checkpointPusher{reg: reg, auth: authFile, blobs: blobs}, nil
}

// checkpointTag is "<job>-round-<n>".
func checkpointTag(job string, round int) string { return fmt.Sprintf("%s-round-%d", job, round) }

func (p *checkpointPusher) push(ctx context.Context, job string, cp fl.Checkpoint) (ocipush.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	data, err := p.blobs.Blob(ctx, cp.Digest)
	if err != nil {
		return ocipush.Result{}, fmt.Errorf("read %s: %w", cp.Digest, err)
	}
	var cred auth.CredentialFunc
	if p.auth != "" {
		if cred, err = ocipush.DockerConfigCredential(p.auth, p.reg); err != nil {
			return ocipush.Result{}, err
		}
	}
	tag := checkpointTag(job, cp.Round)
	res, err := ocipush.Push(ctx, p.reg, tag, data, ocipush.Options{
		Credential: cred,
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
