// Package apitest holds HTTP traffic to the REST API against its OpenAPI
// document (api/rest/openapi.yaml): Transport validates every request a
// test sends and every answer it gets, and fails the test on a mismatch,
// so the document stays the contract rather than a description.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/absmach/propeller/api/rest"
)

// Load parses and validates an OpenAPI document.
func Load(ctx context.Context, yaml []byte) (*openapi3.T, error) {
	l := openapi3.NewLoader()
	l.Context = ctx
	doc, err := l.LoadFromData(yaml)
	if err != nil {
		return nil, fmt.Errorf("load openapi document: %w", err)
	}
	if err := doc.Validate(ctx, openapi3.EnableMultiError()); err != nil {
		return nil, fmt.Errorf("invalid openapi document: %w", err)
	}
	return doc, nil
}

// spec is the committed document, loaded once, with a router that
// matches any host: tests listen on random ports, not the servers entry.
var spec = sync.OnceValues(func() (*checker, error) {
	doc, err := Load(context.Background(), rest.OpenAPIYAML)
	if err != nil {
		return nil, err
	}
	doc.Servers = nil
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi router: %w", err)
	}
	return &checker{doc: doc, router: r}, nil
})

// Document returns the committed document, validated.
func Document() (*openapi3.T, error) {
	c, err := spec()
	if err != nil {
		return nil, err
	}
	return c.doc, nil
}

type mark int

const (
	markInvalid mark = iota + 1
	markUnknownRoute
)

type markKey struct{}

// InvalidRequest marks a request a test sends to see it refused: the
// document must refuse it too, and the answer must be a 4xx the operation
// declares.
func InvalidRequest(ctx context.Context) context.Context {
	return context.WithValue(ctx, markKey{}, markInvalid)
}

// UnknownRoute marks a request to a path or method the API does not have:
// the answer must be the document's generic 404 (NotFound) or 405
// (MethodNotAllowed, with Allow listing the path's methods).
func UnknownRoute(ctx context.Context) context.Context {
	return context.WithValue(ctx, markKey{}, markUnknownRoute)
}

// Transport validates each request and its answer against the document,
// reporting a mismatch with t.Errorf; base (nil: http.DefaultTransport)
// sends them.
func Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	c, err := spec()
	if err != nil {
		t.Fatalf("apitest: %v", err)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{t: t, base: base, c: c}
}

type checker struct {
	doc    *openapi3.T
	router routers.Router
}

type transport struct {
	t    testing.TB
	base http.RoundTripper
	c    *checker
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	// The body is read once; the validator and the server each get a copy.
	send := req.Clone(req.Context())
	send.Body, send.GetBody = newBody(body)
	m, _ := req.Context().Value(markKey{}).(mark)
	what := req.Method + " " + req.URL.RequestURI()

	vreq := req.Clone(req.Context())
	vreq.Body, vreq.GetBody = newBody(body)
	route, params, routeErr := tr.c.router.FindRoute(vreq)
	var in *openapi3filter.RequestValidationInput
	switch {
	case routeErr != nil && m != markUnknownRoute:
		tr.t.Errorf("apitest: %s is not an operation of the OpenAPI document: %v", what, routeErr)
	case routeErr == nil && m == markUnknownRoute:
		tr.t.Errorf("apitest: %s was sent as an unknown route, but the document has it (%s)", what, route.Operation.OperationID)
	case routeErr == nil:
		in = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: requestOptions}
		err := openapi3filter.ValidateRequest(req.Context(), in)
		if err == nil {
			err = undeclaredQuery(route, vreq)
		}
		switch {
		case m == markInvalid && err == nil:
			tr.t.Errorf("apitest: %s (%s) was sent as invalid, but the document accepts it", what, route.Operation.OperationID)
		case m != markInvalid && err != nil:
			tr.t.Errorf("apitest: request %s (%s) does not match the document: %v", what, route.Operation.OperationID, err)
		}
	}

	resp, err := tr.base.RoundTrip(send)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))

	if m == markInvalid && (resp.StatusCode < 400 || resp.StatusCode > 499) {
		tr.t.Errorf("apitest: %s was sent as invalid, but the answer is %d", what, resp.StatusCode)
	}
	switch {
	case in != nil:
		if err := validateResponse(req.Context(), in, resp, respBody); err != nil {
			tr.t.Errorf("apitest: answer %d to %s (%s) does not match the document: %v", resp.StatusCode, what, route.Operation.OperationID, err)
		}
	case m == markUnknownRoute && routeErr != nil:
		if err := tr.c.genericAnswer(vreq, routeErr, resp, respBody); err != nil {
			tr.t.Errorf("apitest: answer %d to %s (not an operation): %v", resp.StatusCode, what, err)
		}
	}
	if err := problemConsistent(req, resp, respBody); err != nil {
		tr.t.Errorf("apitest: answer %d to %s: %v", resp.StatusCode, what, err)
	}
	return resp, nil
}

var requestOptions = &openapi3filter.Options{
	// Defaults would be written into the body the validator reads; the
	// request must reach the server as the test built it.
	SkipSettingDefaults:               true,
	RejectWhenRequestBodyNotSpecified: true,
	MultiError:                        true,
	AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
		tok, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			return in.NewError(errors.New("no Authorization: Bearer <token>"))
		}
		return nil
	},
}

var responseOptions = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}

func validateResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, resp *http.Response, body []byte) error {
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                responseOptions,
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return err
	}
	// A body the document does not describe (a 204's, say) is a mismatch
	// too; the validator only looks at described ones.
	if r := in.Route.Operation.Responses.Status(resp.StatusCode); r != nil && len(r.Value.Content) == 0 && len(body) > 0 {
		return fmt.Errorf("the document declares no body, got %d bytes", len(body))
	}
	return nil
}

// undeclaredQuery reports query parameters the operation does not declare:
// the validator ignores them, so a client sending a misspelt filter would
// be told nothing.
func undeclaredQuery(route *routers.Route, req *http.Request) error {
	for name := range req.URL.Query() {
		if route.Operation.Parameters.GetByInAndName(openapi3.ParameterInQuery, name) == nil &&
			route.PathItem.Parameters.GetByInAndName(openapi3.ParameterInQuery, name) == nil {
			return fmt.Errorf("query parameter %q is not declared", name)
		}
	}
	return nil
}

// genericAnswer checks the answer to a request that is no operation
// against the document's NotFound or MethodNotAllowed response.
func (c *checker) genericAnswer(req *http.Request, routeErr error, resp *http.Response, body []byte) error {
	name, status := "NotFound", http.StatusNotFound
	if errors.Is(routeErr, routers.ErrMethodNotAllowed) {
		name, status = "MethodNotAllowed", http.StatusMethodNotAllowed
	}
	if resp.StatusCode != status {
		return fmt.Errorf("want %d", status)
	}
	ref := c.doc.Components.Responses[name]
	if ref == nil {
		return fmt.Errorf("the document has no components.responses.%s", name)
	}
	op := &openapi3.Operation{Responses: openapi3.NewResponses(openapi3.WithStatus(status, ref))}
	in := &openapi3filter.RequestValidationInput{Request: req, Route: &routers.Route{Spec: c.doc, Path: req.URL.Path, Method: req.Method, Operation: op, PathItem: &openapi3.PathItem{}}}
	if err := validateResponse(req.Context(), in, resp, body); err != nil {
		return err
	}
	if status == http.StatusMethodNotAllowed {
		want := c.methods(req)
		// OPTIONS is every path's (RFC 9110, 9.3.7): the server answers it
		// itself, with Allow, and the document lists no operation for it.
		got := slices.DeleteFunc(strings.Split(strings.ReplaceAll(resp.Header.Get("Allow"), " ", ""), ","),
			func(m string) bool { return m == http.MethodOptions })
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("Allow is %v, the document has %v", got, want)
		}
	}
	return nil
}

// methods returns the methods the document has for req's path.
func (c *checker) methods(req *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodPost, http.MethodPut} {
		r := req.Clone(req.Context())
		r.Method = m
		if _, _, err := c.router.FindRoute(r); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// problemConsistent checks what a schema cannot: a problem's status is
// the answer's, its type ends in its code, and its requestId is the
// answer's X-Request-Id.
func problemConsistent(req *http.Request, resp *http.Response, body []byte) error {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), rest.ProblemContentType) {
		if resp.StatusCode >= 400 && req.Method != http.MethodHead {
			return fmt.Errorf("an error answer is %q, not %s", resp.Header.Get("Content-Type"), rest.ProblemContentType)
		}
		return nil
	}
	var p rest.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("problem body: %w", err)
	}
	switch {
	case p.Status != resp.StatusCode:
		return fmt.Errorf("problem status %d in a %d answer", p.Status, resp.StatusCode)
	case p.Type != rest.ProblemTypeBase+p.Code:
		return fmt.Errorf("problem type %q does not name its code %q", p.Type, p.Code)
	case rest.CodeStatus(p.Code) != p.Status:
		return fmt.Errorf("problem code %q answered with %d, its status is %d", p.Code, p.Status, rest.CodeStatus(p.Code))
	case p.RequestID != "" && p.RequestID != resp.Header.Get("X-Request-Id"):
		return fmt.Errorf("problem requestId %q, X-Request-Id %q", p.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return nil
}

func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	// A RoundTripper closes the request body, also on error.
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

func newBody(b []byte) (io.ReadCloser, func() (io.ReadCloser, error)) {
	if b == nil {
		return http.NoBody, nil
	}
	get := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	rc, _ := get()
	return rc, get
}
