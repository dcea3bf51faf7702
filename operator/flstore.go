package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// FL job records are ConfigMaps fljob-<id> holding the coordinator's whole
// fl.Job as JSON. The coordinator needs one record per job that it updates
// atomically (accepting an update and counting it is one write), including
// fields no user writes; the FederatedJob object is its face, and the
// FederatedJob controller mirrors the record into its status.
const (
	flJobLabel   = "propeller.absmach.io/fljob"
	flJobDataKey = "job.json"
	flJobPrefix  = "fljob-"
)

// FLStore is the fl.Store of the operator.
type FLStore struct {
	c  client.Client
	ns string
}

var _ fl.Store = (*FLStore)(nil)

// NewFLStore returns a job store in namespace ns; c should read from the
// API server.
func NewFLStore(c client.Client, ns string) *FLStore { return &FLStore{c: c, ns: ns} }

func (s *FLStore) key(id string) client.ObjectKey {
	return client.ObjectKey{Namespace: s.ns, Name: flJobPrefix + id}
}

func encodeJob(j fl.Job) (map[string]string, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return map[string]string{flJobDataKey: string(b)}, nil
}

func decodeJob(cm *corev1.ConfigMap) (fl.Job, error) {
	var j fl.Job
	if err := json.Unmarshal([]byte(cm.Data[flJobDataKey]), &j); err != nil {
		return j, fmt.Errorf("decode job %s: %w", cm.Name, err)
	}
	return j, nil
}

// CreateJob stores a new job record.
func (s *FLStore) CreateJob(ctx context.Context, j fl.Job) error {
	if err := checkID(j.ID); err != nil {
		return err
	}
	data, err := encodeJob(j)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: flJobPrefix + j.ID, Namespace: s.ns, Labels: map[string]string{flJobLabel: j.ID}},
		Data:       data,
	}
	if err := s.c.Create(ctx, cm); err != nil {
		return fmt.Errorf("create job %s: %w", j.ID, mapErr(err))
	}
	return nil
}

func (s *FLStore) get(ctx context.Context, id string) (*corev1.ConfigMap, error) {
	if checkID(id) != nil {
		return nil, fmt.Errorf("job %s: %w", id, orchestration.ErrNotFound)
	}
	cm := &corev1.ConfigMap{}
	if err := s.c.Get(ctx, s.key(id), cm); err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, mapErr(err))
	}
	return cm, nil
}

// GetJob reads a job record.
func (s *FLStore) GetJob(ctx context.Context, id string) (fl.Job, error) {
	cm, err := s.get(ctx, id)
	if err != nil {
		return fl.Job{}, err
	}
	return decodeJob(cm)
}

// UpdateJob applies fn with the read resourceVersion, retrying on conflict.
func (s *FLStore) UpdateJob(ctx context.Context, id string, fn func(*fl.Job) error) (fl.Job, error) {
	for {
		cm, err := s.get(ctx, id)
		if err != nil {
			return fl.Job{}, err
		}
		j, err := decodeJob(cm)
		if err != nil {
			return fl.Job{}, err
		}
		if err := fn(&j); err != nil {
			if errors.Is(err, orchestration.ErrNoChange) {
				return decodeJob(cm)
			}
			return fl.Job{}, err
		}
		if j.ID != id {
			return fl.Job{}, fmt.Errorf("update may not change the id of job %s: %w", id, orchestration.ErrInvalid)
		}
		if cm.Data, err = encodeJob(j); err != nil {
			return fl.Job{}, err
		}
		if err := s.c.Update(ctx, cm); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return fl.Job{}, fmt.Errorf("update job %s: %w", id, mapErr(err))
		}
		return decodeJob(cm)
	}
}

// ListJobs returns every job in id order.
func (s *FLStore) ListJobs(ctx context.Context) ([]fl.Job, error) {
	var out []fl.Job
	cont := ""
	for {
		list := &corev1.ConfigMapList{}
		if err := s.c.List(ctx, list, client.InNamespace(s.ns), client.HasLabels{flJobLabel}, client.Limit(200), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("list jobs: %w", mapErr(err))
		}
		for i := range list.Items {
			j, err := decodeJob(&list.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, j)
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	slices.SortFunc(out, func(a, b fl.Job) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
