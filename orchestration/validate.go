package orchestration

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/absmach/propeller/api/wire"
)

// MaxAttemptsLimit caps TaskSpec.MaxAttempts.
const MaxAttemptsLimit = 100

// MaxPropletIDs caps TaskSpec.PropletIDs.
const MaxPropletIDs = 1000

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
	case s.Timeout < 0:
		return bad("timeoutSeconds must not be negative")
	case s.MaxAttempts < 0 || s.MaxAttempts > MaxAttemptsLimit:
		return bad("maxAttempts must be between 0 and %d", MaxAttemptsLimit)
	case s.MemoryBytes < 0:
		return bad("memoryBytes must not be negative")
	case s.PropletID != "" && len(s.Selector) > 0:
		return bad("set propletId or selector, not both")
	case s.PropletID != "" && len(s.PropletIDs) > 0:
		return bad("set propletId or propletIds, not both")
	case len(s.Name) > 253:
		return bad("name longer than 253 characters")
	}
	if err := ValidatePropletIDs(s.PropletIDs); err != nil {
		return err
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("env key %q is not a valid variable name", k)
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
