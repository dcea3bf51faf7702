package install_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// deploy/docker/Dockerfile builds the binary as `make image` does: same
// environment, flags and stamp (parsed here; Docker does not run).
func TestDockerfileMatchesMakeImage(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot(), "deploy", "docker", "Dockerfile"))
	require.Len(t, stages, 2, "multi-stage: build, then the runtime image")

	build := stages[0]
	require.True(t, strings.HasPrefix(build.from, "--platform=$BUILDPLATFORM golang:"), "FROM %s", build.from)
	var goBuild []string
	for _, r := range build.run {
		words := shellWords(t, r)
		if i := slices.Index(words, "go"); i >= 0 && i+1 < len(words) && words[i+1] == "build" {
			goBuild = words
		}
	}
	require.NotNil(t, goBuild, "a RUN with go build")
	i := slices.Index(goBuild, "go")
	env, flags := goBuild[:i], goBuild[i+2:]
	o := slices.Index(flags, "-o")
	require.GreaterOrEqual(t, o, 0)
	pkg := flags[o+2:]
	flags = flags[:o]
	require.Equal(t, []string{"./cmd/propeller"}, pkg)

	// The Makefile's flags with placeholders for the stamp, the
	// Dockerfile's with its ARGs set to the same placeholders.
	stamp := map[string]string{"VERSION": "v-placeholder", "REVISION": "r-placeholder", "BUILD_DATE": "d-placeholder"}
	makeArgs := []string{"-C", repoRoot(), "-s", "--no-print-directory"}
	for k, v := range stamp {
		makeArgs = append(makeArgs, k+"="+v)
	}
	want := shellWords(t, string(run(t, "make", append(makeArgs, "print-GO_BUILD_FLAGS")...)))
	wantEnv := shellWords(t, string(run(t, "make", append(makeArgs, "print-GO_BUILD_ENV")...)))
	for i, f := range flags {
		for k, v := range stamp {
			f = strings.ReplaceAll(f, "${"+k+"}", v)
		}
		flags[i] = f
	}
	require.Equal(t, want, flags, "go build flags of the Dockerfile and of make image")
	require.Subset(t, env, wantEnv, "build environment")
	for _, a := range []string{"VERSION", "REVISION", "BUILD_DATE"} {
		require.Contains(t, build.args, a, "ARG %s", a)
	}

	final := stages[1]
	require.Equal(t, "gcr.io/distroless/static-debian12:nonroot", final.from)
	require.Equal(t, []string{"65532:65532"}, final.user)
	require.Equal(t, []string{`["/propeller"]`}, final.entrypoint)
	require.Contains(t, final.copy, "--from=build /out/propeller /propeller")
	for _, l := range []string{"source", "revision", "version"} {
		require.Contains(t, final.label, "org.opencontainers.image."+l+"=", "LABEL %s", l)
	}
}

type stage struct {
	from                              string
	args, run, user, entrypoint, copy []string
	label                             string
}

// parseDockerfile splits a Dockerfile into stages of instructions, line
// continuations joined and comments dropped.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	var (
		stages []stage
		lines  []string
		cur    string
	)
	for _, l := range strings.Split(string(must(os.ReadFile(path))), "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		lines = append(lines, cur+trimmed)
		cur = ""
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		if strings.EqualFold(instr, "FROM") {
			stages = append(stages, stage{from: strings.TrimSuffix(strings.TrimSuffix(rest, " AS build"), " as build")})
			continue
		}
		if len(stages) == 0 {
			continue // ARGs before the first FROM
		}
		s := &stages[len(stages)-1]
		switch strings.ToUpper(instr) {
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			s.args = append(s.args, name)
		case "RUN":
			s.run = append(s.run, rest)
		case "USER":
			s.user = append(s.user, rest)
		case "ENTRYPOINT":
			s.entrypoint = append(s.entrypoint, rest)
		case "COPY":
			s.copy = append(s.copy, rest)
		case "LABEL":
			s.label += strings.Join(shellWords(t, rest), " ") + " "
		}
	}
	return stages
}

// shellWords splits s as a POSIX shell would for these simple commands:
// words on blanks, double and single quotes grouping, $VAR kept as text.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var (
		words []string
		w     strings.Builder
		in    rune
		any   bool
	)
	for _, r := range s {
		switch {
		case in != 0 && r == in:
			in = 0
		case in != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			in, any = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if w.Len() > 0 || any {
				words = append(words, w.String())
				w.Reset()
				any = false
			}
		default:
			w.WriteRune(r)
		}
	}
	require.Zero(t, in, "unbalanced quotes in %q", s)
	if w.Len() > 0 || any {
		words = append(words, w.String())
	}
	return words
}
