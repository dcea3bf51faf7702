package link

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

// All translation between api/wire and orchestration types lives here.

// startCommand builds the start command for attempt t.Status.Attempt of t.
//
// Artifacts: oci:// and http(s):// images are passed through for the
// proplet to fetch. A blob://sha256:<hex> image (a module uploaded to the
// manager) is sent inline when the BlobSource has it and it is at most
// inlineMax bytes, which saves the proplet a round trip; otherwise it
// becomes relay://sha256:<hex> and the proplet pulls it through the
// artifact relay. The digest is always set for blobs so the proplet verifies
// the bytes either way.
func startCommand(ctx context.Context, t orchestration.Task, blobs BlobSource, inlineMax int) (wire.Command, error) {
	art, err := artifactFor(ctx, t.Spec, blobs, inlineMax)
	if err != nil {
		return wire.Command{}, err
	}
	st := &wire.StartTask{
		TaskID:      t.ID,
		Attempt:     t.Status.Attempt,
		Name:        t.Spec.Name,
		Artifact:    art,
		Function:    t.Spec.Function,
		Inputs:      t.Spec.Inputs,
		CLIArgs:     t.Spec.CLIArgs,
		Env:         t.Spec.Env,
		MemoryPages: t.Spec.MemoryPages,
		Preopen:     t.Spec.Preopen,
	}
	if t.Spec.Timeout > 0 {
		st.TimeoutMS = max(t.Spec.Timeout.Milliseconds(), 1)
	}
	return wire.Command{Type: wire.CommandStart, Start: st}, nil
}

func artifactFor(ctx context.Context, spec orchestration.TaskSpec, blobs BlobSource, inlineMax int) (wire.Artifact, error) {
	img := spec.Image
	switch {
	case img == "":
		return wire.Artifact{}, fmt.Errorf("%w: task has no image", orchestration.ErrInvalid)
	case strings.HasPrefix(img, "oci://"), strings.HasPrefix(img, "http://"), strings.HasPrefix(img, "https://"):
		return wire.Artifact{URI: img, Digest: spec.Digest}, nil
	case strings.HasPrefix(img, wire.BlobScheme):
		d := strings.TrimPrefix(img, wire.BlobScheme)
		if !orchestration.ValidDigest(d) {
			return wire.Artifact{}, fmt.Errorf("%w: bad blob reference %q", orchestration.ErrInvalid, img)
		}
		if spec.Digest != "" && spec.Digest != d {
			return wire.Artifact{}, fmt.Errorf("%w: digest %q does not match image %q", orchestration.ErrInvalid, spec.Digest, img)
		}
		if blobs != nil && inlineMax > 0 {
			// A lookup failure is not fatal: the relay reports it to the
			// proplet, which fails the attempt with a clear reason.
			if b, err := blobs.Blob(ctx, d); err == nil && len(b) <= inlineMax {
				return wire.Artifact{Inline: b, Digest: d}, nil
			}
		}
		return wire.Artifact{URI: wire.RelayScheme + d, Digest: d}, nil
	default:
		return wire.Artifact{}, fmt.Errorf("%w: unsupported image scheme in %q", orchestration.ErrInvalid, img)
	}
}

func stopCommand(taskID string, attempt int, reason string) wire.Command {
	return wire.Command{Type: wire.CommandStop, Stop: &wire.StopTask{TaskID: taskID, Attempt: attempt, Reason: reason}}
}

// propletFromStatus maps an online status. now stands in for a missing or
// absurd proplet clock.
func propletFromStatus(s wire.Status, now time.Time) orchestration.Proplet {
	seen := s.Time
	if seen.IsZero() || seen.After(now) {
		seen = now
	}
	return orchestration.Proplet{
		ID:          s.ID,
		Labels:      s.Labels,
		Slots:       s.Capacity.Slots,
		MemoryBytes: s.Capacity.MemoryBytes,
		Runtime:     s.Runtime,
		Version:     s.Version,
		Instance:    s.Instance,
		Alive:       true,
		LastSeen:    seen,
	}
}

func heartbeatFromWire(id string, hb wire.Heartbeat) orchestration.Heartbeat {
	out := orchestration.Heartbeat{PropletID: id, Instance: hb.Instance, FreeSlots: hb.FreeSlots}
	if len(hb.Running) > 0 {
		out.Running = make([]orchestration.AttemptRef, len(hb.Running))
		for i, r := range hb.Running {
			out.Running[i] = orchestration.AttemptRef{TaskID: r.TaskID, Attempt: r.Attempt}
		}
	}
	return out
}

var eventTypes = map[string]orchestration.EventType{
	wire.EventAccepted:  orchestration.EventAccepted,
	wire.EventRunning:   orchestration.EventRunning,
	wire.EventSucceeded: orchestration.EventSucceeded,
	wire.EventFailed:    orchestration.EventFailed,
}

func eventFromWire(propletID string, e wire.Event) (orchestration.TaskEvent, error) {
	typ, ok := eventTypes[e.Type]
	if !ok {
		return orchestration.TaskEvent{}, fmt.Errorf("unknown event type %q", e.Type)
	}
	if e.TaskID == "" || e.Attempt < 0 {
		return orchestration.TaskEvent{}, fmt.Errorf("event without task id or with negative attempt")
	}
	ev := orchestration.TaskEvent{
		TaskID:    e.TaskID,
		Attempt:   e.Attempt,
		PropletID: propletID,
		Type:      typ,
		Time:      e.Time,
		Reason:    e.Reason,
		Error:     e.Error,
	}
	if r := e.Result; r != nil {
		ev.Results = r.Results
		ev.Stdout = r.Stdout
		ev.Stderr = r.Stderr
		ev.ExitCode = r.ExitCode
	}
	return ev, nil
}
