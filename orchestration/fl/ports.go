package fl

import (
	"context"

	"github.com/absmach/propeller/orchestration"
)

// Store persists jobs. UpdateJob is atomic per job and a nil error means
// the write is durable; fn may run more than once and returning
// orchestration.ErrNoChange skips the write. Errors are the orchestration
// ones (ErrNotFound, ErrExists), so callers test with errors.Is.
type Store interface {
	CreateJob(ctx context.Context, j Job) error
	GetJob(ctx context.Context, id string) (Job, error)
	UpdateJob(ctx context.Context, id string, fn func(*Job) error) (Job, error)
	// ListJobs returns every job in id (creation) order.
	ListJobs(ctx context.Context) ([]Job, error)
}

// Engine is what the coordinator needs from the orchestration engine.
type Engine interface {
	Submit(ctx context.Context, spec orchestration.TaskSpec) (orchestration.Task, error)
	Stop(ctx context.Context, id, message string) (orchestration.Task, error)
	Get(ctx context.Context, id string) (orchestration.Task, error)
	List(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error)
	Proplets(ctx context.Context) ([]orchestration.Proplet, error)
}

// Blobs is a content-addressed store ("sha256:<hex>" digests) for models,
// updates and optimizer state. PutBytes must be durable when it returns.
type Blobs interface {
	PutBytes(b []byte) (string, error)
	Blob(ctx context.Context, digest string) ([]byte, error)
}

// ScratchBlobs is implemented by blob stores that can collect garbage.
// The coordinator stores client updates as scratch blobs and deletes them
// once no running round needs them. A digest also stored with PutBytes
// (before or after) is kept: DeleteScratch leaves it alone, so an update
// equal to a checkpoint, an initial model or a module never takes it
// away. Without this interface updates are stored with PutBytes and kept.
type ScratchBlobs interface {
	// PutScratch stores b as scratch, durably, unless it is held already.
	PutScratch(b []byte) (string, error)
	// Scratch lists the scratch digests.
	Scratch() ([]string, error)
	// DeleteScratch deletes a blob if it is still scratch.
	DeleteScratch(digest string) error
}

// Models fetches an initial model that a modelRef names outside the blob
// store: oci://host/repo[:tag][@sha256:<hex>]. FetchModel bounds the time
// (with ctx) and the size it accepts.
type Models interface {
	FetchModel(ctx context.Context, ref string) ([]byte, error)
}
