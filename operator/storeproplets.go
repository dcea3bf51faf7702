package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/absmach/propeller/orchestration"
)

// Proplets are ConfigMaps labelled propletLabel, named by a hash of the id
// (ids come from MQTT client ids and need not be object names), holding
// the record as JSON. They are few and small, and the engine re-learns
// liveness from the broker anyway.
const (
	propletLabel   = "propeller.absmach.io/proplet"
	propletDataKey = "proplet.json"
	propletIDKey   = "id"
)

func propletObjectName(id string) string { return "proplet-" + hash32(id) }

func (s *Store) propletKey(id string) client.ObjectKey {
	return client.ObjectKey{Namespace: s.ns, Name: propletObjectName(id)}
}

func decodeProplet(cm *corev1.ConfigMap) (orchestration.Proplet, error) {
	var p orchestration.Proplet
	if err := json.Unmarshal([]byte(cm.Data[propletDataKey]), &p); err != nil {
		return p, fmt.Errorf("decode proplet %s: %w", cm.Name, err)
	}
	return p, nil
}

// PutProplet creates or replaces the proplet's record.
func (s *Store) PutProplet(ctx context.Context, p orchestration.Proplet) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.ID == "" {
		return fmt.Errorf("proplet without id: %w", orchestration.ErrInvalid)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode proplet %s: %w", p.ID, err)
	}
	data := map[string]string{propletDataKey: string(b), propletIDKey: p.ID}
	for {
		cm := &corev1.ConfigMap{}
		err := s.c.Get(ctx, s.propletKey(p.ID), cm)
		switch {
		case apierrors.IsNotFound(err):
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{
					Name: propletObjectName(p.ID), Namespace: s.ns,
					Labels: map[string]string{propletLabel: "true"},
				},
				Data: data,
			}
			err = s.c.Create(ctx, cm)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
		case err == nil:
			cm.Data = data
			err = s.c.Update(ctx, cm)
			if apierrors.IsConflict(err) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("put proplet %s: %w", p.ID, mapErr(err))
		}
		return nil
	}
}

// GetProplet reads one proplet record.
func (s *Store) GetProplet(ctx context.Context, id string) (orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.Proplet{}, err
	}
	cm := &corev1.ConfigMap{}
	if err := s.c.Get(ctx, s.propletKey(id), cm); err != nil {
		return orchestration.Proplet{}, fmt.Errorf("get proplet %s: %w", id, mapErr(err))
	}
	if cm.Data[propletIDKey] != id {
		return orchestration.Proplet{}, fmt.Errorf("proplet %s: %w", id, orchestration.ErrNotFound)
	}
	return decodeProplet(cm)
}

// ListProplets returns every proplet record, by id.
func (s *Store) ListProplets(ctx context.Context) ([]orchestration.Proplet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []orchestration.Proplet
	opts := []client.ListOption{client.InNamespace(s.ns), client.MatchingLabels{propletLabel: "true"}, client.Limit(500)}
	cont := ""
	for {
		list := &corev1.ConfigMapList{}
		if err := s.c.List(ctx, list, append(opts, client.Continue(cont))...); err != nil {
			return nil, fmt.Errorf("list proplets: %w", mapErr(err))
		}
		for i := range list.Items {
			p, err := decodeProplet(&list.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	slices.SortFunc(out, func(a, b orchestration.Proplet) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteProplet removes a proplet record.
func (s *Store) DeleteProplet(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: propletObjectName(id), Namespace: s.ns}}
	if err := s.c.Delete(ctx, cm); err != nil {
		return fmt.Errorf("delete proplet %s: %w", id, mapErr(err))
	}
	return nil
}
