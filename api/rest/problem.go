package rest

import (
	"errors"
	"fmt"
	"net/http"
)

// ProblemContentType is the media type of every error body (RFC 9457).
const ProblemContentType = "application/problem+json"

// ProblemTypeBase prefixes a problem's Code to make its Type URI.
const ProblemTypeBase = "https://propeller.absmach.io/problems/"

// Problem codes: stable, machine-readable kinds of failure. A new kind of
// failure gets a new code; an existing code keeps its meaning.
const (
	CodeNotFound             = "not-found"
	CodeAlreadyExists        = "already-exists"
	CodeConflict             = "conflict"
	CodeInvalidRequest       = "invalid-request"
	CodeMalformedBody        = "malformed-body"
	CodeUnsupportedMediaType = "unsupported-media-type"
	CodePayloadTooLarge      = "payload-too-large"
	CodeUnauthorized         = "unauthorized"
	CodeMethodNotAllowed     = "method-not-allowed"
	CodeIdempotencyKeyReused = "idempotency-key-reused"
	CodeNotImplemented       = "not-implemented"
	CodeBadGateway           = "bad-gateway"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
)

type codeInfo struct {
	status int
	title  string
}

var codes = map[string]codeInfo{
	CodeNotFound:             {http.StatusNotFound, "Not found"},
	CodeAlreadyExists:        {http.StatusConflict, "Already exists"},
	CodeConflict:             {http.StatusConflict, "Conflict"},
	CodeInvalidRequest:       {http.StatusBadRequest, "Invalid request"},
	CodeMalformedBody:        {http.StatusBadRequest, "Malformed body"},
	CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	CodePayloadTooLarge:      {http.StatusRequestEntityTooLarge, "Payload too large"},
	CodeUnauthorized:         {http.StatusUnauthorized, "Unauthorized"},
	CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	CodeIdempotencyKeyReused: {http.StatusUnprocessableEntity, "Idempotency key reused"},
	CodeNotImplemented:       {http.StatusNotImplemented, "Not implemented"},
	CodeBadGateway:           {http.StatusBadGateway, "Bad gateway"},
	CodeUnavailable:          {http.StatusServiceUnavailable, "Unavailable"},
	CodeInternal:             {http.StatusInternalServerError, "Internal error"},
}

// Codes returns every problem code.
func Codes() []string {
	out := make([]string, 0, len(codes))
	for c := range codes {
		out = append(out, c)
	}
	return out
}

// CodeStatus is the HTTP status a code is answered with, 500 for an
// unknown code.
func CodeStatus(code string) int {
	if ci, ok := codes[code]; ok {
		return ci.status
	}
	return http.StatusInternalServerError
}

// Problem is an error answer (RFC 9457), and the error the client
// returns for one.
type Problem struct {
	// Type is ProblemTypeBase + Code.
	Type  string `json:"type"`
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail says what was wrong with this request, naming its input.
	Detail string `json:"detail,omitempty"`
	// Code is one of the Code* constants.
	Code string `json:"code"`
	// Instance is the request's path.
	Instance string `json:"instance,omitempty"`
	// RequestID is the request's X-Request-Id, to find it in the logs.
	RequestID string `json:"requestId,omitempty"`
}

// NewProblem returns the problem of a code, with its status and title.
func NewProblem(code, detail string) *Problem {
	ci, ok := codes[code]
	if !ok {
		ci = codes[CodeInternal]
	}
	return &Problem{Type: ProblemTypeBase + code, Title: ci.title, Status: ci.status, Detail: detail, Code: code}
}

// Problemf is NewProblem with a formatted detail.
func Problemf(code, format string, args ...any) *Problem {
	return NewProblem(code, fmt.Sprintf(format, args...))
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("%d %s", p.Status, p.Code)
	if p.Detail != "" {
		s += ": " + p.Detail
	} else if p.Title != "" {
		s += ": " + p.Title
	}
	return s
}

// statusCode guesses a code for an answer without a problem body (a
// proxy's error page, say).
func statusCode(status int) string {
	switch status {
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return CodeInvalidRequest
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMediaType
	case http.StatusRequestEntityTooLarge:
		return CodePayloadTooLarge
	case http.StatusUnauthorized, http.StatusForbidden:
		return CodeUnauthorized
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusNotImplemented:
		return CodeNotImplemented
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return CodeBadGateway
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	return CodeInternal
}

// AsProblem returns the Problem in err's chain.
func AsProblem(err error) (*Problem, bool) {
	var p *Problem
	ok := errors.As(err, &p)
	return p, ok
}

// HasCode reports whether err is a Problem with this code.
func HasCode(err error, code string) bool {
	p, ok := AsProblem(err)
	return ok && p.Code == code
}

// IsNotFound reports whether err says the resource does not exist.
func IsNotFound(err error) bool { return HasCode(err, CodeNotFound) }

// IsConflict reports whether err says the resource is not in a state that
// allows the request (a stop of a finished task, say) or already exists.
func IsConflict(err error) bool {
	return HasCode(err, CodeConflict) || HasCode(err, CodeAlreadyExists)
}

// IsUnauthorized reports whether err says the token is missing or wrong.
func IsUnauthorized(err error) bool { return HasCode(err, CodeUnauthorized) }
