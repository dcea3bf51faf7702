package orchestration

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/absmach/propeller/api/wire"
)

// ValidateSpec reports the first problem with a task spec, wrapping
// ErrInvalid, so every frontend refuses the same bad input the same way.
func ValidateSpec(s TaskSpec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
	}
	switch {
	case s.Image == "" && !s.Suspend:
		return bad("imageUrl is required (or create the task suspended and upload its module)")
	case s.Image != "" && !validImage(s.Image):
		return bad("imageUrl %q: want oci://, http://, https:// or %ssha256:<hex>", s.Image, wire.BlobScheme)
	case s.Digest != "" && !ValidDigest(s.Digest):
		return bad("digest %q: want sha256:<64 hex>", s.Digest)
	case s.Timeout < 0 || s.Timeout > MaxTimeout:
		return bad("timeoutSeconds must be between 0 and %d (%s)", int64(MaxTimeout/time.Second), MaxTimeout)
	case s.MaxAttempts < 0 || s.MaxAttempts > MaxAttemptsLimit:
		return bad("maxAttempts must be between 0 and %d", MaxAttemptsLimit)
	case s.MemoryBytes < 0:
		return bad("memoryBytes must not be negative")
	case s.PropletID != "" && len(s.Selector) > 0:
		return bad("set propletId or selector, not both")
	case s.PropletID != "" && len(s.PropletIDs) > 0:
		return bad("set propletId or propletIds, not both")
	case len(s.Name) > MaxNameLength:
		return bad("name is %d characters long, the limit is %d", len(s.Name), MaxNameLength)
	case len(s.Image) > MaxImageLength:
		return bad("imageUrl is %d characters long, the limit is %d", len(s.Image), MaxImageLength)
	case len(s.Function) > MaxFunctionLength:
		return bad("function is %d characters long, the limit is %d", len(s.Function), MaxFunctionLength)
	case len(s.Inputs) > MaxInputs:
		return bad("%d inputs, the limit is %d", len(s.Inputs), MaxInputs)
	case len(s.CLIArgs) > MaxArgs:
		return bad("%d cliArgs, the limit is %d", len(s.CLIArgs), MaxArgs)
	case len(s.Env) > MaxEnv:
		return bad("%d env variables, the limit is %d", len(s.Env), MaxEnv)
	}
	if n := argBytes(s.CLIArgs); n > MaxArgBytes {
		return bad("cliArgs are %d bytes together, the limit is %d", n, MaxArgBytes)
	}
	if err := validateLabels("labels", s.Labels); err != nil {
		return err
	}
	if err := validateLabels("selector", s.Selector); err != nil {
		return err
	}
	if err := ValidatePropletIDs(s.PropletIDs); err != nil {
		return err
	}
	size := 0
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("env key %q is not a valid variable name", k)
		}
		if len(k) > MaxEnvKeyLength {
			return bad("env key %.32q... is %d bytes long, the limit is %d", k, len(k), MaxEnvKeyLength)
		}
		if strings.ContainsRune(v, 0) {
			return bad("env %q: the value contains a NUL byte", k)
		}
		size += len(k) + len(v)
	}
	if size > MaxEnvBytes {
		return bad("env is %d bytes together, the limit is %d", size, MaxEnvBytes)
	}
	return nil
}

func argBytes(args []string) int {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	return n
}

// validateLabels checks a label map (labels or selector) against MaxLabels
// and the key and value lengths.
func validateLabels(field string, m map[string]string) error {
	if len(m) > MaxLabels {
		return fmt.Errorf("%s has %d entries, the limit is %d: %w", field, len(m), MaxLabels, ErrInvalid)
	}
	for k, v := range m {
		switch {
		case k == "":
			return fmt.Errorf("%s has an empty key: %w", field, ErrInvalid)
		case len(k) > MaxLabelKeyLength:
			return fmt.Errorf("%s key %.32q... is %d characters long, the limit is %d: %w", field, k, len(k), MaxLabelKeyLength, ErrInvalid)
		case len(v) > MaxLabelValueLength:
			return fmt.Errorf("%s %q: the value is %d characters long, the limit is %d: %w", field, k, len(v), MaxLabelValueLength, ErrInvalid)
		}
	}
	return nil
}

func validImage(img string) bool {
	if d, ok := strings.CutPrefix(img, wire.BlobScheme); ok {
		return ValidDigest(d)
	}
	scheme, rest, ok := strings.Cut(img, "://")
	if !ok || rest == "" {
		return false
	}
	switch scheme {
	case "oci", "http", "https":
		return true
	}
	return false
}

// ValidDigest reports whether d is "sha256:" followed by 64 lowercase hex.
func ValidDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// ValidatePropletIDs reports the first problem with a candidate set
// (TaskSpec.PropletIDs), wrapping ErrInvalid: an empty or repeated id, or
// more than MaxPropletIDs ids. An empty set is valid: no constraint.
func ValidatePropletIDs(ids []string) error {
	if len(ids) > MaxPropletIDs {
		return fmt.Errorf("propletIds lists %d proplets, at most %d are allowed: %w", len(ids), MaxPropletIDs, ErrInvalid)
	}
	seen := make(map[string]struct{}, len(ids))
	for i, id := range ids {
		if id == "" {
			return fmt.Errorf("propletIds[%d] is empty: %w", i, ErrInvalid)
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("propletIds lists %q twice: %w", id, ErrInvalid)
		}
		seen[id] = struct{}{}
	}
	return nil
}
