// Package rest is Propeller's REST API v1 as Go types, and a Go SDK client
// for it.
//
// The same types are what the manager's server (manager/rest) encodes, so
// a field means the same on both sides. The package imports only the
// standard library: a program that talks to a manager does not pull the
// manager's dependencies.
//
// # Conventions
//
// Every route is under /v1 except the probes (/healthz, /readyz) and
// /metrics. JSON field names are lowerCamelCase everywhere, the names of
// the Kubernetes custom resources (a WasmTask's imageUrl, cliArgs,
// timeoutSeconds; a FederatedJob's modelRef, kOfN), so a spec reads the
// same over REST and in YAML.
//
// A request that fails returns a *Problem (RFC 9457): its Code is one of
// the stable Code* constants and its Detail names the input at fault.
// Test for a kind of failure with IsNotFound, IsConflict or HasCode.
//
// Lists come in pages: pass Limit (default 100, at most 1000) and the
// Continue token of the previous page; the last page has an empty
// Continue.
//
// Creates accept an Idempotency-Key (WithIdempotencyKey): a retry with the
// same key and body returns the first result instead of creating a
// second task or job.
//
// # Client
//
//	c, err := rest.NewClient("http://127.0.0.1:7070", token)
//	t, err := c.CreateTask(ctx, rest.TaskRequest{Name: "hello", ImageURL: "oci://ghcr.io/acme/hello:1"})
//	t, err = c.WaitTask(ctx, t.ID, time.Second)
//
// The document at OpenAPIYAML (served as /v1/openapi.json) is the
// contract.
package rest

import _ "embed"

// OpenAPIYAML is the API's OpenAPI document, the contract the server is
// tested against; the manager serves it as /v1/openapi.json.
//
//go:embed openapi.yaml
var OpenAPIYAML []byte
