package main

import (
	"encoding/json"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVersion: what -ldflags -X set is printed, in every form.
func TestVersion(t *testing.T) {
	defer func(v, r, d string) { version, revision, buildDate = v, r, d }(version, revision, buildDate)
	version, revision, buildDate = "v1.2.3", "0123456789abcdef", "2025-01-02T03:04:05Z"

	code, out, _ := runCLI(t, "version")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "propeller v1.2.3\n")
	require.Contains(t, out, "revision:   0123456789abcdef")
	require.Contains(t, out, "build date: 2025-01-02T03:04:05Z")

	code, out, _ = runCLI(t, "version", "--short")
	require.Equal(t, exitOK, code)
	require.Equal(t, "v1.2.3\n", out)

	code, out, _ = runCLI(t, "version", "-o", "json")
	require.Equal(t, exitOK, code)
	var v versionInfo
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.Equal(t, "v1.2.3", v.Version)
	require.Equal(t, "0123456789abcdef", v.Revision)
	require.Equal(t, "2025-01-02T03:04:05Z", v.BuildDate)
	require.NotEmpty(t, v.GoVersion)
	require.NotEmpty(t, v.Platform)

	code, _, stderr := runCLI(t, "version", "-o", "wide")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `--output "wide": want json or yaml`)
}

// TestVersionDefaults: without -ldflags the version is "dev" (the VCS
// stamp of a real build is checked by the e2e CLI test).
func TestVersionDefaults(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "dev"
	code, out, _ := runCLI(t, "version", "--short")
	require.Equal(t, exitOK, code)
	require.Equal(t, "dev\n", out)
}

// TestVersionFromBuildInfo: without -ldflags, the module version and the
// VCS stamp fill the fields; -ldflags values win over them.
func TestVersionFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2025-06-07T08:09:10Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	v := versionInfo{Version: "dev"}.stamped(bi)
	require.Equal(t, versionInfo{Version: "v0.9.0", Revision: "abc123", BuildDate: "2025-06-07T08:09:10Z", Modified: true}, v)

	v = versionInfo{Version: "v1.0.0", Revision: "set", BuildDate: "then"}.stamped(bi)
	require.Equal(t, versionInfo{Version: "v1.0.0", Revision: "set", BuildDate: "then", Modified: true}, v)

	v = versionInfo{Version: "dev"}.stamped(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}})
	require.Equal(t, versionInfo{Version: "dev"}, v)
}
