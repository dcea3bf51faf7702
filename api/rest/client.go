package rest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header names the API uses beyond the standard ones.
const (
	HeaderRequestID           = "X-Request-Id"
	HeaderIdempotencyKey      = "Idempotency-Key"
	HeaderIdempotentReplay    = "Idempotent-Replayed"
	HeaderDockerContentDigest = "Docker-Content-Digest"
)

// Client talks to one manager's REST API. It is safe for concurrent use.
type Client struct {
	base      string
	token     string
	http      *http.Client
	tls       *tls.Config
	userAgent string
}

// Option configures NewClient.
type Option func(*Client)

// WithHTTPClient sends requests through hc instead of a client of the
// package's own (30 s timeout); WithTLSConfig is then ignored.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithTLSConfig sets how an https:// manager is verified (its CA, say).
func WithTLSConfig(cfg *tls.Config) Option { return func(c *Client) { c.tls = cfg } }

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// NewClient returns a client for the manager at baseURL
// (http(s)://host:port, without /v1) that sends token as its bearer
// token; an empty token sends none.
func NewClient(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rest: base URL %q: want http(s)://host:port", baseURL)
	}
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, userAgent: "propeller-go"}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		tr.TLSClientConfig = c.tls
		c.http = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	return c, nil
}

// CallOption adjusts one request.
type CallOption func(*call)

type call struct {
	header http.Header
	resp   *http.Header
}

// WithIdempotencyKey makes a create safe to retry: the manager answers a
// retry with the same key and body with the first result (a different
// body with the same key is CodeIdempotencyKeyReused).
func WithIdempotencyKey(key string) CallOption {
	return func(c *call) { c.header.Set(HeaderIdempotencyKey, key) }
}

// WithRequestID sends id as the request's X-Request-Id (at most 128 of
// [A-Za-z0-9._-]); without it the manager makes one up.
func WithRequestID(id string) CallOption {
	return func(c *call) { c.header.Set(HeaderRequestID, id) }
}

// WithResponseHeader stores the answer's header in h, for the Location
// of a create, its X-Request-Id or Idempotent-Replayed.
func WithResponseHeader(h *http.Header) CallOption {
	return func(c *call) { c.resp = h }
}

func (c *Client) newRequest(ctx context.Context, method, path, contentType string, body io.Reader, opts []CallOption) (*http.Request, *call, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	cl := &call{header: req.Header}
	for _, o := range opts {
		o(cl)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return req, cl, nil
}

// send does one request and returns the open answer of a 2xx, or the
// answer's Problem.
func (c *Client) send(ctx context.Context, method, path, contentType string, body io.Reader, opts []CallOption) (*http.Response, error) {
	req, cl, err := c.newRequest(ctx, method, path, contentType, body, opts)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if cl.resp != nil {
		*cl.resp = resp.Header.Clone()
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readProblem(resp)
	}
	return resp, nil
}

// readProblem decodes an error answer; one that is not a problem (a
// proxy's page, say) becomes a Problem with its text as the detail.
func readProblem(resp *http.Response) *Problem {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == ProblemContentType || mt == "application/json" {
		var p Problem
		if json.Unmarshal(raw, &p) == nil && p.Code != "" {
			p.Status = resp.StatusCode
			return &p
		}
	}
	p := NewProblem(statusCode(resp.StatusCode), strings.TrimSpace(string(raw)))
	p.Status = resp.StatusCode
	if p.Detail == "" {
		p.Detail = http.StatusText(resp.StatusCode)
	}
	p.RequestID = resp.Header.Get(HeaderRequestID)
	return p
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any, opts []CallOption) error {
	resp, err := c.send(ctx, method, path, contentType, body, opts)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("rest: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any, opts []CallOption) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, ct, body, out, opts)
}

func esc(s string) string { return url.PathEscape(s) }

func pageQuery(q url.Values, p Page) url.Values {
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Continue != "" {
		q.Set("continue", p.Continue)
	}
	return q
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// Healthz checks that the manager's process serves (GET /healthz).
func (c *Client) Healthz(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

// Readyz checks that the manager can do its work, its broker connected
// (GET /readyz); a CodeUnavailable problem says why not.
func (c *Client) Readyz(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}

// OpenAPI returns the API's OpenAPI document as JSON.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/openapi.json", "", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// CreateTask creates a task and schedules it, unless it is suspended.
func (c *Client) CreateTask(ctx context.Context, req TaskRequest, opts ...CallOption) (Task, error) {
	var t Task
	err := c.doJSON(ctx, http.MethodPost, "/v1/tasks", req, &t, opts)
	return t, err
}

// CreateTasks creates 1 to 1000 tasks in one durable write, all or none;
// the answer is in request order.
func (c *Client) CreateTasks(ctx context.Context, reqs []TaskRequest, opts ...CallOption) ([]Task, error) {
	var b TaskBatch
	err := c.doJSON(ctx, http.MethodPost, "/v1/tasks:batch", TaskBatchRequest{Tasks: reqs}, &b, opts)
	return b.Items, err
}

// GetTask fetches one task.
func (c *Client) GetTask(ctx context.Context, id string) (Task, error) {
	var t Task
	err := c.doJSON(ctx, http.MethodGet, "/v1/tasks/"+esc(id), nil, &t, nil)
	return t, err
}

// ListTasks returns one page of the tasks f selects, oldest first.
func (c *Client) ListTasks(ctx context.Context, f TaskFilter) (TaskList, error) {
	q := pageQuery(url.Values{}, f.Page)
	if len(f.Phases) > 0 {
		q.Set("phase", strings.Join(f.Phases, ","))
	}
	if f.PropletID != "" {
		q.Set("propletId", f.PropletID)
	}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.IDPrefix != "" {
		q.Set("idPrefix", f.IDPrefix)
	}
	for k, v := range f.Labels {
		q.Add("label", k+"="+v)
	}
	var l TaskList
	err := c.doJSON(ctx, http.MethodGet, withQuery("/v1/tasks", q), nil, &l, nil)
	return l, err
}

// Tasks yields every task f selects, page by page (f.Limit is the page
// size); iteration stops at the first error.
func (c *Client) Tasks(ctx context.Context, f TaskFilter) iter.Seq2[Task, error] {
	return pages(func(p Page) (List[Task], error) {
		f.Page = p
		return c.ListTasks(ctx, f)
	}, f.Page)
}

// StartTask releases a suspended task for scheduling.
func (c *Client) StartTask(ctx context.Context, id string) (Task, error) {
	var t Task
	err := c.doJSON(ctx, http.MethodPost, "/v1/tasks/"+esc(id)+"/start", nil, &t, nil)
	return t, err
}

// StopTask cancels a task; a running one is stopped on its proplet.
func (c *Client) StopTask(ctx context.Context, id string) (Task, error) {
	var t Task
	err := c.doJSON(ctx, http.MethodPost, "/v1/tasks/"+esc(id)+"/stop", nil, &t, nil)
	return t, err
}

// DeleteTask stops a task if it runs, then deletes it.
func (c *Client) DeleteTask(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/tasks/"+esc(id), nil, nil, nil)
}

// UploadWasm attaches a module to a suspended task.
func (c *Client) UploadWasm(ctx context.Context, id string, wasm []byte) (Task, error) {
	var t Task
	err := c.do(ctx, http.MethodPut, "/v1/tasks/"+esc(id)+"/wasm", "application/wasm", bytes.NewReader(wasm), &t, nil)
	return t, err
}

// WaitTask polls the task every interval until it is final or ctx ends.
func (c *Client) WaitTask(ctx context.Context, id string, every time.Duration) (Task, error) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		t, err := c.GetTask(ctx, id)
		if err != nil {
			return t, err
		}
		if Terminal(t.Phase) {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-tick.C:
		}
	}
}

// ListProplets returns one page of the proplets, by id.
func (c *Client) ListProplets(ctx context.Context, p Page) (PropletList, error) {
	var l PropletList
	err := c.doJSON(ctx, http.MethodGet, withQuery("/v1/proplets", pageQuery(url.Values{}, p)), nil, &l, nil)
	return l, err
}

// Proplets yields every proplet, page by page.
func (c *Client) Proplets(ctx context.Context) iter.Seq2[Proplet, error] {
	return pages(func(p Page) (List[Proplet], error) { return c.ListProplets(ctx, p) }, Page{})
}

// GetProplet fetches one proplet.
func (c *Client) GetProplet(ctx context.Context, id string) (Proplet, error) {
	var p Proplet
	err := c.doJSON(ctx, http.MethodGet, "/v1/proplets/"+esc(id), nil, &p, nil)
	return p, err
}

// DeleteProplet forgets a proplet (it comes back when it reports again).
func (c *Client) DeleteProplet(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/proplets/"+esc(id), nil, nil, nil)
}

// IssueCredential gives proplet id a fresh MQTT secret, replacing (and
// disconnecting) any previous one. The secret is shown only here.
func (c *Client) IssueCredential(ctx context.Context, id string) (IssuedCredential, error) {
	var r IssuedCredential
	err := c.doJSON(ctx, http.MethodPost, "/v1/proplets/"+esc(id)+"/credentials", nil, &r, nil)
	return r, err
}

// GetCredential says whether proplet id has a secret and since when; a
// not-found problem when it has none.
func (c *Client) GetCredential(ctx context.Context, id string) (PropletCredential, error) {
	var r PropletCredential
	err := c.doJSON(ctx, http.MethodGet, "/v1/proplets/"+esc(id)+"/credentials", nil, &r, nil)
	return r, err
}

// RevokeCredential forgets proplet id's secret and disconnects it.
func (c *Client) RevokeCredential(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/proplets/"+esc(id)+"/credentials", nil, nil, nil)
}

// CreateFederatedJob starts a federated-learning job.
func (c *Client) CreateFederatedJob(ctx context.Context, req FederatedJobRequest, opts ...CallOption) (FederatedJob, error) {
	var j FederatedJob
	err := c.doJSON(ctx, http.MethodPost, "/v1/federated-jobs", req, &j, opts)
	return j, err
}

// ListFederatedJobs returns one page of the FL jobs, by id.
func (c *Client) ListFederatedJobs(ctx context.Context, p Page) (FederatedJobList, error) {
	var l FederatedJobList
	err := c.doJSON(ctx, http.MethodGet, withQuery("/v1/federated-jobs", pageQuery(url.Values{}, p)), nil, &l, nil)
	return l, err
}

// FederatedJobs yields every FL job, page by page.
func (c *Client) FederatedJobs(ctx context.Context) iter.Seq2[FederatedJob, error] {
	return pages(func(p Page) (List[FederatedJob], error) { return c.ListFederatedJobs(ctx, p) }, Page{})
}

// GetFederatedJob fetches one FL job.
func (c *Client) GetFederatedJob(ctx context.Context, id string) (FederatedJob, error) {
	var j FederatedJob
	err := c.doJSON(ctx, http.MethodGet, "/v1/federated-jobs/"+esc(id), nil, &j, nil)
	return j, err
}

// StopFederatedJob ends a running FL job and stops its round's tasks.
func (c *Client) StopFederatedJob(ctx context.Context, id string) (FederatedJob, error) {
	var j FederatedJob
	err := c.doJSON(ctx, http.MethodPost, "/v1/federated-jobs/"+esc(id)+"/stop", nil, &j, nil)
	return j, err
}

// ListCheckpoints returns one page of an FL job's checkpoints, oldest
// first.
func (c *Client) ListCheckpoints(ctx context.Context, jobID string, p Page) (CheckpointList, error) {
	var l CheckpointList
	err := c.doJSON(ctx, http.MethodGet, withQuery("/v1/federated-jobs/"+esc(jobID)+"/checkpoints", pageQuery(url.Values{}, p)), nil, &l, nil)
	return l, err
}

// Model downloads a model (a checkpoint, an initial model) by digest,
// sha256:<hex>; the bytes are safetensors.
func (c *Client) Model(ctx context.Context, digest string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/models/"+esc(digest), "", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Backup streams a consistent copy of the manager's database (a bbolt
// file) to w and returns the bytes copied. The copy is complete only when
// the error is nil.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/backup", "", nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// pages yields the items of every page from start on.
func pages[T any](get func(Page) (List[T], error), start Page) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		p := start
		for {
			l, err := get(p)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range l.Items {
				if !yield(it, nil) {
					return
				}
			}
			if l.Continue == "" {
				return
			}
			p.Continue = l.Continue
		}
	}
}
