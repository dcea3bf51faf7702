package operator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/orchestration"
)

// listToken is the store's continue token.
type listToken struct {
	// K is the API server's continue token.
	K string `json:"k,omitempty"`
	// A is the sort key ("<namespace>/<name>") of the last task returned,
	// to resume after K expired.
	A string `json:"a"`
}

func encodeToken(tk listToken) string {
	b, _ := json.Marshal(tk)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (listToken, error) {
	var tk listToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &tk)
	}
	if err == nil && tk.A == "" {
		err = errors.New("no position")
	}
	if err != nil {
		return tk, fmt.Errorf("bad continue token: %w", orchestration.ErrInvalid)
	}
	return tk, nil
}

var allPhases = []orchestration.Phase{
	orchestration.PhasePending, orchestration.PhaseScheduled, orchestration.PhaseRunning,
	orchestration.PhaseSucceeded, orchestration.PhaseFailed, orchestration.PhaseCancelled,
}

// selectorValue reports whether v can travel in a field selector as is.
func selectorValue(v string) bool {
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// fieldSelector narrows a list on the server. It may select more than f
// (the store re-checks every task), never less.
func fieldSelector(f orchestration.TaskFilter) fields.Selector {
	var terms []fields.Selector
	if f.PropletID != "" && selectorValue(f.PropletID) {
		terms = append(terms, fields.OneTermEqualSelector("status.propletId", f.PropletID))
	}
	want := map[orchestration.Phase]bool{}
	known := true
	for _, p := range f.Phases {
		want[p] = true
		known = known && p.Valid()
	}
	switch {
	case len(want) == 0 || !known || len(want) == len(allPhases):
	case len(want) == 1 && !want[orchestration.PhasePending]:
		// Pending also covers objects not yet admitted (no phase), so it
		// is only ever selected as "not the others".
		terms = append(terms, fields.OneTermEqualSelector("status.phase", string(f.Phases[0])))
	default:
		for _, p := range allPhases {
			if !want[p] {
				terms = append(terms, fields.OneTermNotEqualSelector("status.phase", string(p)))
			}
		}
	}
	if len(terms) == 0 {
		return nil
	}
	return fields.AndSelectors(terms...)
}

// ListTasks returns one page in id order.
func (s *Store) ListTasks(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error) {
	if err := ctx.Err(); err != nil {
		return orchestration.TaskPage{}, err
	}
	limit, err := f.PageLimit()
	if err != nil {
		return orchestration.TaskPage{}, err
	}
	var tk listToken
	if f.Continue != "" {
		var err error
		if tk, err = decodeToken(f.Continue); err != nil {
			return orchestration.TaskPage{}, err
		}
	}
	opts := []client.ListOption{client.Limit(int64(limit))}
	if !s.all {
		opts = append(opts, client.InNamespace(s.ns))
	}
	if len(f.Labels) > 0 {
		sel := labels.Set{}
		for k, v := range f.Labels {
			sel[indexLabelKey(k)] = hash32(v)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel.AsSelector()})
	}
	sf := f
	if s.coalesce > 0 && slices.Contains(f.Phases, orchestration.PhaseRunning) && !slices.Contains(f.Phases, orchestration.PhaseScheduled) {
		// A held Running write still reads Scheduled on the server.
		sf.Phases = append(slices.Clone(f.Phases), orchestration.PhaseScheduled)
	}
	if fs := fieldSelector(sf); fs != nil {
		opts = append(opts, client.MatchingFieldsSelector{Selector: fs})
	}
	// after skips what an earlier page returned; it matters only after a
	// restart from the beginning.
	after := ""
	cont := tk.K
	if f.Continue != "" && cont == "" {
		after = tk.A
	}
	var page orchestration.TaskPage
	// lastKey is the sort key of the last task in page.
	lastKey := ""
	for {
		list := &v1.WasmTaskList{}
		err := s.c.List(ctx, list, append(opts, client.Continue(cont))...)
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			cont, after = "", tk.A
			continue
		}
		if err != nil {
			return orchestration.TaskPage{}, fmt.Errorf("list wasmtasks: %w", mapErr(err))
		}
		slices.SortFunc(list.Items, func(a, b v1.WasmTask) int { return strings.Compare(sortKey(&a), sortKey(&b)) })
		for i := range list.Items {
			if sortKey(&list.Items[i]) <= after {
				continue
			}
			_, item := s.heldOver(&list.Items[i])
			t := s.task(item)
			if f.Match(&t) {
				page.Tasks = append(page.Tasks, t)
				lastKey = sortKey(item)
			}
		}
		if list.Continue == "" {
			return page, nil
		}
		if len(page.Tasks) > 0 {
			page.Continue = encodeToken(listToken{K: list.Continue, A: lastKey})
			return page, nil
		}
		// Everything on this server page was filtered out here: keep
		// going rather than hand out an empty page with a token.
		cont = list.Continue
		if len(list.Items) > 0 {
			tk.A = sortKey(&list.Items[len(list.Items)-1])
		}
	}
}
