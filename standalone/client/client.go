// Package client is a Go client for the standalone manager's REST API, used
// by the CLI, the end-to-end tests and the load harness.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/standalone"
)

// Client talks to one manager. Safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Options configure New.
type Options struct {
	// HTTPClient defaults to one with a 30s timeout.
	HTTPClient *http.Client
	// TLS configures HTTPS when HTTPClient is nil.
	TLS *tls.Config
}

// New returns a client for server (http(s)://host:port) with a bearer token.
func New(server, token string, opts Options) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: server %q: want http(s)://host:port", server)
	}
	hc := opts.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		tr.TLSClientConfig = opts.TLS
		hc = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	return &Client{base: strings.TrimSuffix(server, "/"), token: token, http: hc}, nil
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Body standalone.Error
}

func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Body.Error()) }

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		se := &StatusError{Code: resp.StatusCode}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &se.Body) != nil || se.Body.Message == "" {
			se.Body.Message = strings.TrimSpace(string(raw))
		}
		return se
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, ct, body, out)
}

// CreateTask submits a task.
func (c *Client) CreateTask(ctx context.Context, req standalone.TaskRequest) (standalone.Task, error) {
	var t standalone.Task
	err := c.doJSON(ctx, http.MethodPost, "/tasks", req, &t)
	return t, err
}

// GetTask fetches one task.
func (c *Client) GetTask(ctx context.Context, id string) (standalone.Task, error) {
	var t standalone.Task
	err := c.doJSON(ctx, http.MethodGet, "/tasks/"+url.PathEscape(id), nil, &t)
	return t, err
}

// ListFilter selects tasks in ListTasks.
type ListFilter struct {
	States    []string
	PropletID string
	Labels    map[string]string
	Limit     int
	Continue  string
}

// ListTasks returns one page.
func (c *Client) ListTasks(ctx context.Context, f ListFilter) (standalone.TaskList, error) {
	q := url.Values{}
	if len(f.States) > 0 {
		q.Set("state", strings.Join(f.States, ","))
	}
	if f.PropletID != "" {
		q.Set("proplet_id", f.PropletID)
	}
	for k, v := range f.Labels {
		q.Add("label", k+"="+v)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Continue != "" {
		q.Set("continue", f.Continue)
	}
	var l standalone.TaskList
	err := c.doJSON(ctx, http.MethodGet, "/tasks?"+q.Encode(), nil, &l)
	return l, err
}

// StartTask releases a suspended task.
func (c *Client) StartTask(ctx context.Context, id string) (standalone.Task, error) {
	var t standalone.Task
	err := c.doJSON(ctx, http.MethodPost, "/tasks/"+url.PathEscape(id)+"/start", nil, &t)
	return t, err
}

// StopTask cancels a task.
func (c *Client) StopTask(ctx context.Context, id string) (standalone.Task, error) {
	var t standalone.Task
	err := c.doJSON(ctx, http.MethodPost, "/tasks/"+url.PathEscape(id)+"/stop", nil, &t)
	return t, err
}

// DeleteTask removes a task.
func (c *Client) DeleteTask(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/tasks/"+url.PathEscape(id), nil, nil)
}

// UploadWasm attaches a module to a suspended task.
func (c *Client) UploadWasm(ctx context.Context, id string, wasm []byte) (standalone.Task, error) {
	var t standalone.Task
	err := c.do(ctx, http.MethodPut, "/tasks/"+url.PathEscape(id)+"/wasm", "application/wasm", bytes.NewReader(wasm), &t)
	return t, err
}

// Proplets lists proplets.
func (c *Client) Proplets(ctx context.Context) ([]standalone.Proplet, error) {
	var l standalone.PropletList
	err := c.doJSON(ctx, http.MethodGet, "/proplets", nil, &l)
	return l.Proplets, err
}

// Terminal reports whether a REST state string is final.
func Terminal(state string) bool {
	return state == "Succeeded" || state == "Failed" || state == "Cancelled"
}

// WaitTask polls until the task is terminal or ctx ends.
func (c *Client) WaitTask(ctx context.Context, id string, every time.Duration) (standalone.Task, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		task, err := c.GetTask(ctx, id)
		if err != nil {
			return task, err
		}
		if Terminal(task.State) {
			return task, nil
		}
		select {
		case <-ctx.Done():
			return task, ctx.Err()
		case <-t.C:
		}
	}
}

// CreateFederatedJob starts an FL job.
func (c *Client) CreateFederatedJob(ctx context.Context, req standalone.FederatedJobRequest) (fl.Job, error) {
	var j fl.Job
	err := c.doJSON(ctx, http.MethodPost, "/federated-jobs", req, &j)
	return j, err
}

// FederatedJobs lists FL jobs.
func (c *Client) FederatedJobs(ctx context.Context) ([]fl.Job, error) {
	var l standalone.FederatedJobList
	err := c.doJSON(ctx, http.MethodGet, "/federated-jobs", nil, &l)
	return l.Jobs, err
}

// FederatedJob fetches one FL job.
func (c *Client) FederatedJob(ctx context.Context, id string) (fl.Job, error) {
	var j fl.Job
	err := c.doJSON(ctx, http.MethodGet, "/federated-jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// StopFederatedJob stops an FL job.
func (c *Client) StopFederatedJob(ctx context.Context, id string) (fl.Job, error) {
	var j fl.Job
	err := c.doJSON(ctx, http.MethodPost, "/federated-jobs/"+url.PathEscape(id)+"/stop", nil, &j)
	return j, err
}

// IssueCredential gives proplet id a fresh secret, replacing (and
// disconnecting) any previous one. The secret is shown only here.
func (c *Client) IssueCredential(ctx context.Context, id string) (standalone.IssuedCredential, error) {
	var r standalone.IssuedCredential
	err := c.doJSON(ctx, http.MethodPost, "/proplets/"+url.PathEscape(id)+"/credentials", nil, &r)
	return r, err
}

// Credential says whether proplet id has a secret and since when; a 404
// (IsNotFound) when it has none.
func (c *Client) Credential(ctx context.Context, id string) (standalone.PropletCredential, error) {
	var r standalone.PropletCredential
	err := c.doJSON(ctx, http.MethodGet, "/proplets/"+url.PathEscape(id)+"/credentials", nil, &r)
	return r, err
}

// RevokeCredential forgets proplet id's secret and disconnects it.
func (c *Client) RevokeCredential(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/proplets/"+url.PathEscape(id)+"/credentials", nil, nil)
}
