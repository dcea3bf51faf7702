package orchestration

import "time"

// Limits on one task spec, enforced by ValidateSpec for every frontend (the
// REST API, the operator's WasmTask conversion, the FL coordinator) and
// mirrored by the CRD's validation markers and the OpenAPI document
// (docs/rest.md lists them). Each bounds what one task may cost the
// manager's memory and store and the proplet's setup before its deadline;
// they are far above what real tasks use.
const (
	// MaxNameLength bounds a task's name (a DNS subdomain's length).
	MaxNameLength = 253
	// MaxImageLength bounds imageUrl.
	MaxImageLength = 2048
	// MaxFunctionLength bounds the exported function's name.
	MaxFunctionLength = 256
	// MaxInputs bounds inputs (wasm functions rarely take more than a few).
	MaxInputs = 1000
	// MaxArgs and MaxArgBytes bound cliArgs: how many, and all of them
	// together in bytes.
	MaxArgs     = 1024
	MaxArgBytes = 256 << 10
	// MaxEnv, MaxEnvKeyLength and MaxEnvBytes bound env: how many
	// variables, one name's length, and all names and values together.
	MaxEnv          = 1024
	MaxEnvKeyLength = 256
	MaxEnvBytes     = 256 << 10
	// MaxLabels bounds labels and selector each; MaxLabelKeyLength and
	// MaxLabelValueLength one entry of them.
	MaxLabels           = 64
	MaxLabelKeyLength   = 253
	MaxLabelValueLength = 253
	// MaxTimeout is the longest timeout a task may set: a week. With the
	// engine's deadline grace added it stays far from time.Duration's
	// overflow at 292 years.
	MaxTimeout = 7 * 24 * time.Hour
	// MaxAttemptsLimit caps TaskSpec.MaxAttempts.
	MaxAttemptsLimit = 100
	// MaxPropletIDs caps TaskSpec.PropletIDs.
	MaxPropletIDs = 1000
	// MaxBatchSize caps SubmitBatch: a batch is one store write, and 1,000
	// tasks keep that write (about 1.5 MB in bbolt) and its reply small.
	MaxBatchSize = 1000
)
