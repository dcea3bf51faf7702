package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// flRig is a rig with a model to train and helpers to run rounds.
type flRig struct {
	*apiRig
	model []byte
}

func newFLRigWithModel(t *testing.T) *flRig {
	r := newRig(t, func(c *rest.Config) { c.MaxUploadBytes = 1 << 20 })
	model, err := safetensors.EncodeF32(map[string][]float32{"w": {0, 0}}, nil, nil)
	require.NoError(t, err)
	return &flRig{apiRig: r, model: model}
}

// jobBody is a one-participant job (p1) of rounds rounds, with inline
// model and module; mod adjusts it.
func (r *flRig) jobBody(t *testing.T, mod func(map[string]any)) []byte {
	spec := map[string]any{
		"experimentId": "e1", "initialModel": r.model, "taskWasm": wasmHeader,
		"participants": []map[string]any{{"propletId": "p1"}}, "kOfN": 1,
		"rounds": map[string]any{"total": 3}, "aggregator": map[string]any{"algorithm": "fedavg"},
	}
	if mod != nil {
		mod(spec)
	}
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	return b
}

// collect follows a list's continue tokens at page size limit and
// returns the ids of every item, checking each page's size.
func (r *apiRig) collect(t *testing.T, path string, limit int, id func(map[string]any) string) []string {
	t.Helper()
	var ids []string
	cont := ""
	u, err := url.Parse(path)
	require.NoError(t, err)
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100, "the continue tokens loop")
		q := u.Query()
		q.Set("limit", fmt.Sprint(limit))
		if cont != "" {
			q.Set("continue", cont)
		}
		code, body := r.json(http.MethodGet, u.Path+"?"+q.Encode(), nil)
		require.Equal(t, http.StatusOK, code, body)
		items := body["items"].([]any)
		pageSize := limit
		if pageSize == 0 {
			pageSize = orchestration.DefaultPageLimit
		}
		require.LessOrEqual(t, len(items), pageSize)
		for _, it := range items {
			ids = append(ids, id(it.(map[string]any)))
		}
		cont = body["continue"].(string)
		if cont == "" {
			return ids
		}
		require.Len(t, items, pageSize, "only the last page is short")
	}
}

func byID(m map[string]any) string { return m["id"].(string) }

func TestPaginationOfTasks(t *testing.T) {
	r := newAPIRig(t)
	var want []string
	for i := range 7 {
		code, body := r.json(http.MethodPost, "/v1/tasks", map[string]any{"name": fmt.Sprintf("t%d", i), "suspend": true})
		require.Equal(t, http.StatusCreated, code, body)
		want = append(want, body["id"].(string))
	}
	require.Equal(t, want, r.collect(t, "/v1/tasks", 3, byID), "oldest first, each once")
	require.Equal(t, []string{want[4]}, r.collect(t, "/v1/tasks?name=t4", 3, byID), "name is exact")
	require.Equal(t, []string{want[6]}, r.collect(t, "/v1/tasks?idPrefix="+want[6], 3, byID), "a whole id is its own prefix")
	var shared []string // ids are time-ordered: those made together share a prefix
	for _, id := range want {
		if strings.HasPrefix(id, want[0][:8]) {
			shared = append(shared, id)
		}
	}
	require.Equal(t, shared, r.collect(t, "/v1/tasks?idPrefix="+want[0][:8], 3, byID))
	require.Empty(t, r.collect(t, "/v1/tasks?idPrefix=zz", 3, byID))
	require.Equal(t, want, r.collect(t, "/v1/tasks", 0, byID), "limit 0 is the default page")
}

func TestPaginationOfProplets(t *testing.T) {
	r := newAPIRig(t)
	ctx := context.Background()
	for _, id := range []string{"p4", "p1", "p5", "p3", "p2"} {
		require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: id, Slots: 1}))
	}
	require.Equal(t, []string{"p1", "p2", "p3", "p4", "p5"}, r.collect(t, "/v1/proplets", 2, byID))
	require.Equal(t, []string{"p1", "p2", "p3", "p4", "p5"}, r.collect(t, "/v1/proplets", 5, byID))

	// A proplet that joins between pages shows up when it sorts after
	// the token; none is listed twice.
	code, first := r.json(http.MethodGet, "/v1/proplets?limit=2", nil)
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "p0", Slots: 1}))
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "p9", Slots: 1}))
	code, second := r.json(http.MethodGet, "/v1/proplets?limit=10&continue="+url.QueryEscape(first["continue"].(string)), nil)
	require.Equal(t, http.StatusOK, code)
	var rest []string
	for _, it := range second["items"].([]any) {
		rest = append(rest, byID(it.(map[string]any)))
	}
	require.Equal(t, []string{"p3", "p4", "p5", "p9"}, rest)
	require.Empty(t, second["continue"])
}

func TestPaginationOfFederatedJobs(t *testing.T) {
	r := newFLRigWithModel(t)
	var want []string
	for i := range 5 {
		code, body := r.do(http.MethodPost, "/v1/federated-jobs", "application/json",
			r.jobBody(t, func(m map[string]any) { m["experimentId"] = fmt.Sprint("e", i) }), "Bearer "+token)
		require.Equal(t, http.StatusCreated, code, body)
		want = append(want, body["id"].(string))
	}
	require.Equal(t, want, r.collect(t, "/v1/federated-jobs", 2, byID), "oldest first")
}

// TestPaginationOfCheckpoints runs a job's rounds on the real
// coordinator, one checkpoint per round, and pages through them.
func TestPaginationOfCheckpoints(t *testing.T) {
	r := newFLRigWithModel(t)
	ctx := context.Background()
	require.NoError(t, r.eng.PropletUp(ctx, orchestration.Proplet{ID: "p1", Slots: 1}))
	const rounds = 5
	code, body := r.do(http.MethodPost, "/v1/federated-jobs", "application/json",
		r.jobBody(t, func(m map[string]any) { m["rounds"] = map[string]any{"total": rounds} }), "Bearer "+token)
	require.Equal(t, http.StatusCreated, code, body)
	id := body["id"].(string)
	tensor, err := safetensors.EncodeF32(map[string][]float32{"w": {1, 2}}, nil, nil)
	require.NoError(t, err)
	for n := 1; n <= rounds; n++ {
		j, err := r.fl.Get(ctx, id)
		require.NoError(t, err)
		cur := j.Current()
		require.Equal(t, n, cur.Number)
		require.Len(t, cur.Participants, 1)
		require.NoError(t, r.fl.Receive(ctx, fl.Update{JobID: id, RoundID: cur.ID, TaskID: cur.Participants[0].TaskID,
			PropletID: "p1", Attempt: 1, NumSamples: 10, Tensor: tensor, Time: time.Now()}))
		r.fl.Tick(ctx)
	}
	j, err := r.fl.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, fl.JobSucceeded, j.Status.Phase, j.Status.Message)
	require.Len(t, j.Status.Checkpoints, rounds)

	got := r.collect(t, "/v1/federated-jobs/"+id+"/checkpoints", 2, func(m map[string]any) string { return fmt.Sprint(m["round"]) })
	require.Equal(t, []string{"1", "2", "3", "4", "5"}, got)
}

// TestFederatedJobIdempotencyKey: a retried create finds the first job;
// the same key with another spec is refused.
func TestFederatedJobIdempotencyKey(t *testing.T) {
	r := newFLRigWithModel(t)
	post := func(key string, body []byte) *http.Response {
		return r.request(http.MethodPost, "/v1/federated-jobs", "application/json", body,
			http.Header{"Authorization": {"Bearer " + token}, api.HeaderIdempotencyKey: {key}})
	}
	first := post("job-1", r.jobBody(t, nil))
	require.Equal(t, http.StatusCreated, first.StatusCode)
	require.Empty(t, first.Header.Get(api.HeaderIdempotentReplay))
	j1 := decode(t, first)

	again := post("job-1", r.jobBody(t, nil))
	require.Equal(t, http.StatusCreated, again.StatusCode)
	require.Equal(t, "true", again.Header.Get(api.HeaderIdempotentReplay))
	j2 := decode(t, again)
	require.Equal(t, j1["id"], j2["id"])
	require.Equal(t, first.Header.Get("Location"), again.Header.Get("Location"))

	other := post("job-2", r.jobBody(t, nil))
	require.Equal(t, http.StatusCreated, other.StatusCode)
	require.NotEqual(t, j1["id"], decode(t, other)["id"], "another key, another job")

	reused := post("job-1", r.jobBody(t, func(m map[string]any) { m["experimentId"] = "changed" }))
	require.Equal(t, http.StatusUnprocessableEntity, reused.StatusCode)
	p := decode(t, reused)
	require.Equal(t, api.CodeIdempotencyKeyReused, p["code"])
	require.Equal(t, fmt.Sprintf(`Idempotency-Key "job-1" created federated job %q with a different spec; use a new key for a new job`, j1["id"]), p["detail"])

	code, list := r.json(http.MethodGet, "/v1/federated-jobs", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, list["items"], 2, "three creates with two keys made two jobs")
}
