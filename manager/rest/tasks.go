package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/orchestration"
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toTask(t orchestration.Task) api.Task {
	pinned := t.Spec.PropletID
	st := t.Status
	r := api.Task{
		ID: t.ID, Name: t.Spec.Name, Phase: string(st.Phase),
		ImageURL: t.Spec.Image, Digest: t.Spec.Digest, Function: t.Spec.Function,
		Inputs: t.Spec.Inputs, CLIArgs: t.Spec.CLIArgs, Env: t.Spec.Env, Labels: t.Spec.Labels,
		TimeoutSeconds: t.Spec.Timeout.Seconds(), MaxAttempts: t.Spec.MaxAttempts,
		MemoryPages: t.Spec.MemoryPages, MemoryBytes: t.Spec.MemoryBytes,
		Selector: t.Spec.Selector, Suspend: t.Spec.Suspend, Preopen: t.Spec.Preopen,
		PropletID: st.PropletID, PropletIDs: t.Spec.PropletIDs, Attempt: st.Attempt,
		Results: st.Results, Stdout: st.Stdout, Stderr: st.Stderr, ExitCode: st.ExitCode,
		Reason: st.Reason, Message: st.Message, LastFailure: st.LastFailure,
		CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt,
		ScheduledAt: timePtr(st.ScheduledAt), StartedAt: timePtr(st.StartedAt), FinishedAt: timePtr(st.FinishedAt),
	}
	if r.PropletID == "" {
		r.PropletID = pinned
	}
	return r
}

// wasmMagic opens every WebAssembly binary (magic + version 1).
var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

func checkWasm(field string, b []byte) error {
	if !bytes.HasPrefix(b, wasmMagic) {
		return api.Problemf(api.CodeInvalidRequest, "%s is not a WebAssembly module: a module starts with \\0asm and version 1", field)
	}
	return nil
}

// decodeJSON reads a JSON body into v: 415 for another content type, 413
// past limit, 400 for malformed JSON or unknown fields.
func decodeJSON(c echo.Context, limit int64, v any) error {
	_, err := readBody(c, limit, v, false)
	return err
}

// readJSON is decodeJSON for task requests: it also returns the body as
// read, which an Idempotency-Key's fingerprint covers, and refuses
// containers over the task limits before decoding (checkContainers).
func readJSON(c echo.Context, limit int64, v any) ([]byte, error) {
	return readBody(c, limit, v, true)
}

func readBody(c echo.Context, limit int64, v any, bounded bool) ([]byte, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
		return nil, api.Problemf(api.CodeUnsupportedMediaType, "Content-Type %q: want application/json", ct)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, api.Problemf(api.CodePayloadTooLarge, "request body too large: the limit is %d bytes", limit)
		}
		return nil, api.Problemf(api.CodeMalformedBody, "request body not read: %v", err)
	}
	if bounded {
		if err := checkContainers(raw, maxJSONMembers); err != nil {
			return nil, err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, api.Problemf(api.CodeMalformedBody, "malformed JSON body: %v", err)
	}
	if dec.More() {
		return nil, api.NewProblem(api.CodeMalformedBody, "malformed JSON body: trailing data after the JSON object")
	}
	return raw, nil
}

// taskSpec turns one request into an engine spec, storing an inline
// module in the blob store. prefix names the request in a detail: "" for
// POST /v1/tasks, "tasks[i]." inside a batch.
func (s *server) taskSpec(prefix string, req api.TaskRequest) (orchestration.TaskSpec, error) {
	// Checked before the conversion: seconds past MaxTimeout overflow a
	// time.Duration into a negative one.
	if maxSec := orchestration.MaxTimeout.Seconds(); req.TimeoutSeconds < 0 || req.TimeoutSeconds > maxSec {
		return orchestration.TaskSpec{}, api.Problemf(api.CodeInvalidRequest, "%stimeoutSeconds is %g: want 0 to %g (%s)", prefix, req.TimeoutSeconds, maxSec, orchestration.MaxTimeout)
	}
	if req.File != nil && len(req.File) == 0 {
		// "file": "" decodes to an empty, non-nil slice: a module that is
		// not there, not a request for a suspended task.
		return orchestration.TaskSpec{}, api.Problemf(api.CodeInvalidRequest, "%sfile is empty: give the module's bytes (base64), or leave file out", prefix)
	}
	spec := orchestration.TaskSpec{
		Name: req.Name, Image: req.ImageURL, Digest: req.Digest, Function: req.Function,
		Inputs: req.Inputs, CLIArgs: req.CLIArgs, Env: req.Env, Labels: req.Labels,
		Timeout:     time.Duration(req.TimeoutSeconds * float64(time.Second)),
		MaxAttempts: req.MaxAttempts, MemoryPages: req.MemoryPages, MemoryBytes: req.MemoryBytes, Preopen: req.Preopen,
		PropletID: req.PropletID, PropletIDs: req.PropletIDs, Selector: req.Selector, Suspend: req.Suspend,
	}
	switch {
	case len(req.File) > 0 && req.ImageURL != "":
		return spec, api.Problemf(api.CodeInvalidRequest, "give %sfile or %simageUrl, not both", prefix, prefix)
	case len(req.File) > 0:
		if int64(len(req.File)) > s.maxUploadBytes {
			return spec, api.Problemf(api.CodePayloadTooLarge, "%sfile too large: the limit is %d bytes", prefix, s.maxUploadBytes)
		}
		if err := checkWasm(prefix+"file", req.File); err != nil {
			return spec, err
		}
		d, err := s.blobs.PutBytes(req.File)
		if err != nil {
			return spec, fmt.Errorf("store module: %w", err)
		}
		spec.Image, spec.Digest = wire.BlobScheme+d, d
	case req.ImageURL == "" && !req.Suspend:
		return spec, api.Problemf(api.CodeInvalidRequest,
			"give %sfile or %simageUrl, or %ssuspend: true to upload the module later with PUT /v1/tasks/{id}/wasm", prefix, prefix, prefix)
	}
	return spec, nil
}

// created answers a create: 201, the task, and where it lives.
func created(c echo.Context, t orchestration.Task) error {
	c.Response().Header().Set(echo.HeaderLocation, "/v1/tasks/"+url.PathEscape(t.ID))
	return c.JSON(http.StatusCreated, toTask(t))
}

func (s *server) createTask(c echo.Context) error {
	var req api.TaskRequest
	raw, err := readJSON(c, s.createLimit(), &req)
	if err != nil {
		return err
	}
	idem, err := idempotencyOf(c, raw)
	if err != nil {
		return err
	}
	spec, err := s.taskSpec("", req)
	if err != nil {
		return err
	}
	if idem.Key == "" {
		t, err := s.engine.Submit(c.Request().Context(), spec)
		if err != nil {
			return err
		}
		return created(c, t)
	}
	tasks, replayed, err := s.engine.SubmitBatch(c.Request().Context(), []orchestration.TaskSpec{spec}, idem)
	if err != nil {
		return keyedCreateError(err)
	}
	markReplayed(c, replayed)
	return created(c, tasks[0])
}

// createLimit bounds a create's body: one module, base64 (a third
// larger), and the rest of the request.
func (s *server) createLimit() int64 { return s.maxUploadBytes*4/3 + 64<<10 }

func (s *server) getTask(c echo.Context) error {
	t, err := s.engine.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTask(t))
}

func (s *server) listTasks(c echo.Context) error {
	q := c.QueryParams()
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	f := orchestration.TaskFilter{PropletID: q.Get("propletId"), Name: q.Get("name"), IDPrefix: q.Get("idPrefix"), Limit: limit, Continue: q.Get("continue")}
	for _, v := range q["phase"] {
		for _, p := range strings.Split(v, ",") {
			ph := orchestration.Phase(p)
			if !ph.Valid() {
				return api.Problemf(api.CodeInvalidRequest, "phase %q is not a task phase (Pending, Scheduled, Running, Succeeded, Failed, Cancelled)", p)
			}
			f.Phases = append(f.Phases, ph)
		}
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return api.Problemf(api.CodeInvalidRequest, "label %q: want label=key=value", l)
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	page, err := s.engine.List(c.Request().Context(), f)
	if errors.Is(err, orchestration.ErrInvalid) {
		// The limit was checked above: what is left is the token.
		return badContinue(f.Continue)
	}
	if err != nil {
		return err
	}
	out := api.TaskList{Items: make([]api.Task, 0, len(page.Tasks)), Continue: page.Continue}
	for _, t := range page.Tasks {
		out.Items = append(out.Items, toTask(t))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) startTask(c echo.Context) error {
	t, err := s.engine.Start(c.Request().Context(), c.Param("id"))
	if errors.Is(err, orchestration.ErrNoChange) {
		return api.Problemf(api.CodeConflict, "task %q is not suspended: it was started already and is %s", t.ID, t.Status.Phase)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTask(t))
}

func (s *server) stopTask(c echo.Context) error {
	t, err := s.engine.Stop(c.Request().Context(), c.Param("id"), "stopped over the REST API")
	if errors.Is(err, orchestration.ErrTerminal) {
		return api.Problemf(api.CodeConflict, "task %q already finished: it is %s", t.ID, t.Status.Phase)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTask(t))
}

func (s *server) deleteTask(c echo.Context) error {
	if err := s.engine.Delete(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) uploadWasm(c echo.Context) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, _ := mime.ParseMediaType(ct); mt != "application/wasm" && mt != echo.MIMEOctetStream {
		return api.Problemf(api.CodeUnsupportedMediaType, "Content-Type %q: want application/wasm or application/octet-stream", ct)
	}
	ctx := c.Request().Context()
	id := c.Param("id")
	if _, err := s.engine.Get(ctx, id); err != nil {
		return err
	}
	body := http.MaxBytesReader(c.Response(), c.Request().Body, s.maxUploadBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return api.Problemf(api.CodePayloadTooLarge, "module too large: the limit is %d bytes", s.maxUploadBytes)
		}
		return api.Problemf(api.CodeMalformedBody, "cannot read the body: %v", err)
	}
	if err := checkWasm("the body", b); err != nil {
		return err
	}
	d, err := s.blobs.PutBytes(b)
	if err != nil {
		return fmt.Errorf("store module: %w", err)
	}
	t, err := s.engine.EditSuspended(ctx, id, func(sp *orchestration.TaskSpec) error {
		sp.Image, sp.Digest = wire.BlobScheme+d, d
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTask(t))
}

// pageLimit reads ?limit: 0 or absent is the default page size.
func pageLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > orchestration.MaxPageLimit {
		return 0, api.Problemf(api.CodeInvalidRequest, "limit %q: want an integer from 0 to %d", v, orchestration.MaxPageLimit)
	}
	return n, nil
}

func badContinue(tok string) error {
	return api.Problemf(api.CodeInvalidRequest, "continue %q is not a token this list gave out: start again from the first page", tok)
}
