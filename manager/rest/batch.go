package rest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
)

// batchLimit bounds a batch's body: what one create may carry, plus 4 KiB
// for each task of the largest batch. Many tasks sharing one inline module
// repeat it in the body but store it once.
func (s *server) batchLimit() int64 {
	return s.createLimit() + orchestration.MaxBatchSize*4<<10
}

// createTaskBatch is POST /v1/tasks:batch: 1 to MaxBatchSize tasks in one
// durable write, all or none, answered in request order.
func (s *server) createTaskBatch(c echo.Context) error {
	var req api.TaskBatchRequest
	raw, err := readJSON(c, s.batchLimit(), &req)
	if err != nil {
		return err
	}
	switch n := len(req.Tasks); {
	case n == 0:
		return api.Problemf(api.CodeInvalidRequest, "tasks is empty: a batch holds 1 to %d tasks", orchestration.MaxBatchSize)
	case n > orchestration.MaxBatchSize:
		return api.Problemf(api.CodeInvalidRequest, "tasks holds %d tasks: a batch holds at most %d; split it", n, orchestration.MaxBatchSize)
	}
	idem, err := idempotencyOf(c, raw)
	if err != nil {
		return err
	}
	specs := make([]orchestration.TaskSpec, len(req.Tasks))
	for i, tr := range req.Tasks {
		if specs[i], err = s.taskSpec(fmt.Sprintf("tasks[%d].", i), tr); err != nil {
			return err
		}
	}
	tasks, replayed, err := s.engine.SubmitBatch(c.Request().Context(), specs, idem)
	if err != nil {
		return keyedCreateError(err)
	}
	markReplayed(c, replayed)
	out := api.TaskBatch{Items: make([]api.Task, len(tasks))}
	for i, t := range tasks {
		out.Items[i] = toTask(t)
	}
	return c.JSON(http.StatusCreated, out)
}

// idempotencyOf reads a create's Idempotency-Key and fingerprints the
// request; no header is the zero Idempotency (every call creates).
func idempotencyOf(c echo.Context, raw []byte) (orchestration.Idempotency, error) {
	vals := c.Request().Header.Values(api.HeaderIdempotencyKey)
	if len(vals) == 0 {
		return orchestration.Idempotency{}, nil
	}
	key, err := checkIdempotencyKey(vals)
	if err != nil {
		return orchestration.Idempotency{}, err
	}
	req := c.Request()
	return orchestration.Idempotency{Key: key, Fingerprint: fingerprint(req.Method, req.URL.Path, raw)}, nil
}

// checkIdempotencyKey refuses a key the engine could not keep or a log
// line could not show: one header, 1 to 255 printable ASCII characters.
func checkIdempotencyKey(vals []string) (string, error) {
	if len(vals) > 1 {
		return "", api.Problemf(api.CodeInvalidRequest, "Idempotency-Key is given %d times: give it once", len(vals))
	}
	key := vals[0]
	switch {
	case key == "":
		return "", api.NewProblem(api.CodeInvalidRequest, "Idempotency-Key is empty: give 1 to 255 characters, or no header")
	case len(key) > orchestration.MaxIdempotencyKeyLen:
		return "", api.Problemf(api.CodeInvalidRequest, "Idempotency-Key is longer than %d characters", orchestration.MaxIdempotencyKeyLen)
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", api.Problemf(api.CodeInvalidRequest, "Idempotency-Key holds byte 0x%02x at %d: use printable ASCII", key[i], i)
		}
	}
	return key, nil
}

// fingerprint identifies a create for its Idempotency-Key: the sha256 of
// its method, path and canonical body. The body is made canonical by
// decoding and encoding it again (object keys sorted, no insignificant
// whitespace, numbers as written), so a retry that serialises the same
// request another way matches. readJSON has parsed raw already.
func fingerprint(method, path string, raw []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", method, path)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	canon, err := []byte(nil), dec.Decode(&v)
	if err == nil {
		canon, err = json.Marshal(v)
	}
	if err != nil {
		canon = raw // unreachable after readJSON; the raw bytes still identify the request
	}
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// markReplayed tells the client an answer repeats a first request's.
func markReplayed(c echo.Context, replayed bool) {
	if replayed {
		c.Response().Header().Set(api.HeaderIdempotentReplay, "true")
	}
}

// keyedCreateError maps what only a create with a key meets: the tasks
// its first request made were deleted since. That is a 409, not a 404,
// which would say the route is not there.
func keyedCreateError(err error) error {
	if !errors.Is(err, orchestration.ErrNotFound) {
		return err
	}
	d := cleanDetail(err, orchestration.ErrNotFound)
	if d == "" {
		d = "a task the first request with this Idempotency-Key created has since been deleted"
	}
	return api.Problemf(api.CodeConflict, "%s; use a new Idempotency-Key to create it again", d)
}
