package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// envPrefix prefixes every environment variable the binary reads.
const envPrefix = "PROPELLER"

// globalOptions are flags every command has.
type globalOptions struct {
	configFile string
	logLevel   string
	logFormat  string
}

func (o *globalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.configFile, "config", "", "YAML config file (default $XDG_CONFIG_HOME/propeller/config.yaml, else ~/.config/propeller/config.yaml); its keys are flag names, top level or under the command's section (manager, proplet, client), and the CLI's contexts")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
}

func (o *globalOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", o.logFormat)
}

// envName is the environment variable that sets a flag:
// --http-addr is PROPELLER_HTTP_ADDR.
func envName(flag string) string {
	return envPrefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flag))
}

// sectionOf is the config file section a command reads besides the top
// level: the managers read "manager", the worker "proplet", and every
// command that talks to a manager "client".
func sectionOf(cmd *cobra.Command) string {
	path := strings.Fields(cmd.CommandPath())
	switch {
	case len(path) > 1 && path[1] == "manager":
		return "manager"
	case len(path) == 2 && path[1] == "proplet":
		return "proplet"
	}
	return "client"
}

// Keys of the config file that are not flags.
const (
	keyContexts       = "contexts"
	keyCurrentContext = "current-context"
)

var sections = []string{"manager", "proplet", "client"}

// contextKeys are what a context may hold: the client flags that say
// which manager to talk to and how to authenticate to it.
var contextKeys = []string{"server", "token", "token-file", "tls-ca"}

// settings is a parsed config file.
type settings struct {
	path string
	// explicit: named by --config or PROPELLER_CONFIG, so it must exist.
	explicit bool
	exists   bool
	// raw is the whole document; the context commands edit and rewrite it.
	raw map[string]any
}

// defaultConfigPath follows the XDG base directory spec, as kubectl's
// and most Linux tools' user config does (also on macOS).
func defaultConfigPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "propeller", "config.yaml")
}

// settings reads the config file: --config, else PROPELLER_CONFIG, else
// the default path (which may be absent). The file is checked against the
// whole command tree, so a misspelt key is an error wherever it is.
func (o *globalOptions) settings(cmd *cobra.Command) (*settings, error) {
	s := &settings{path: o.configFile, explicit: true, raw: map[string]any{}}
	if s.path == "" {
		s.path = os.Getenv(envName("config"))
	}
	if s.path == "" {
		s.path, s.explicit = defaultConfigPath(), false
	}
	if s.path == "" {
		return s, nil
	}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("read config %s: %w", s.path, err)}
	}
	s.exists = true
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, usageErrorf("config %s: %v", s.path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	// Numbers stay as written: 536870912 must not become 5.36870912e+08.
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, usageErrorf("config %s: %v", s.path, err)
	}
	switch m := doc.(type) {
	case nil:
	case map[string]any:
		s.raw = m
	default:
		return nil, usageErrorf("config %s: want a mapping of settings at the top level", s.path)
	}
	if err := s.validate(cmd.Root()); err != nil {
		return nil, err
	}
	return s, nil
}

// knownFlags maps each section to the flag names its commands have,
// inherited ones included. The selectors of the file and the context are
// not settings.
func knownFlags(root *cobra.Command) map[string][]string {
	out := map[string][]string{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		sec := sectionOf(c)
		add := func(f *pflag.Flag) {
			if f.Name != "help" && f.Name != "config" && f.Name != "context" && !slices.Contains(out[sec], f.Name) {
				out[sec] = append(out[sec], f.Name)
			}
		}
		c.Flags().VisitAll(add)
		for p := c; p != nil; p = p.Parent() {
			p.PersistentFlags().VisitAll(add)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return out
}

func (s *settings) validate(root *cobra.Command) error {
	known := knownFlags(root)
	var all []string
	for _, names := range known {
		all = append(all, names...)
	}
	var errs []string
	unknown := func(key, name string, candidates []string) {
		msg := fmt.Sprintf("unknown key %q", key)
		if best := suggestKey(name, candidates); best != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", best)
		}
		errs = append(errs, msg)
	}
	for key, val := range s.raw {
		switch {
		case key == keyCurrentContext:
			if _, ok := val.(string); !ok {
				errs = append(errs, fmt.Sprintf("%s: want a context name", key))
			}
		case key == keyContexts:
			ctxs, ok := val.(map[string]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: want a mapping of context names to settings", key))
				break
			}
			for name, c := range ctxs {
				m, ok := c.(map[string]any)
				if !ok {
					errs = append(errs, fmt.Sprintf("%s.%s: want a mapping of %s", key, name, strings.Join(contextKeys, ", ")))
					continue
				}
				for k := range m {
					if !slices.Contains(contextKeys, k) {
						unknown(key+"."+name+"."+k, k, contextKeys)
					}
				}
			}
		case slices.Contains(sections, key):
			m, ok := val.(map[string]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: want a mapping of flag names to values", key))
				break
			}
			for k := range m {
				if !slices.Contains(known[key], k) {
					unknown(key+"."+k, k, known[key])
				}
			}
		case !slices.Contains(all, key):
			unknown(key, key, append(slices.Clone(all), keyContexts, keyCurrentContext))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return usageErrorf("config %s: %s", s.path, strings.Join(errs, "; "))
}

func (s *settings) section(name string) map[string]any {
	m, _ := s.raw[name].(map[string]any)
	return m
}

// contexts returns the named contexts; validate checked their shape.
func (s *settings) contexts() map[string]map[string]any {
	out := map[string]map[string]any{}
	m, _ := s.raw[keyContexts].(map[string]any)
	for name, c := range m {
		out[name], _ = c.(map[string]any)
	}
	return out
}

func (s *settings) currentContext() string {
	c, _ := s.raw[keyCurrentContext].(string)
	return c
}

// context returns the settings of the named context.
func (s *settings) context(name string) (map[string]any, error) {
	ctxs := s.contexts()
	if c, ok := ctxs[name]; ok {
		return c, nil
	}
	names := make([]string, 0, len(ctxs))
	for n := range ctxs {
		names = append(names, n)
	}
	sort.Strings(names)
	have := "it has none; add one with 'propeller context set'"
	if len(names) > 0 {
		have = "it has " + strings.Join(names, ", ")
	}
	return nil, usageErrorf("context %q is not in %s: %s", name, s.path, have)
}

// credentialFlags are one setting for precedence: a token given at a
// level hides every token source of a lower one, so --token-file beats
// a context's token, not only its token-file.
var credentialFlags = []string{"token", "token-file", "data-dir"}

// resolveFlags fills every flag the user did not set on the command line
// from, in order, its PROPELLER_* environment variable, the selected
// context (client commands), the config file under the command's section,
// and the config file's top level; otherwise it keeps its default. This is
// the only place that reads the environment; commands read typed options.
func (o *globalOptions) resolveFlags(cmd *cobra.Command) error {
	s, err := o.settings(cmd)
	if err != nil {
		return err
	}
	if s.explicit && !s.exists {
		return usageErrorf("read config %s: no such file", s.path)
	}
	var ctx map[string]any
	if f := cmd.Flags().Lookup("context"); f != nil {
		name := f.Value.String()
		if !f.Changed {
			name = cmp.Or(os.Getenv(envName("context")), s.currentContext())
		}
		if name != "" {
			if ctx, err = s.context(name); err != nil {
				return err
			}
		}
	}
	sec := s.section(sectionOf(cmd))
	type source struct {
		what string
		vals func(name string) (any, bool)
	}
	fromMap := func(m map[string]any) func(string) (any, bool) {
		return func(name string) (any, bool) { v, ok := m[name]; return v, ok }
	}
	sources := []source{
		{"environment", func(name string) (any, bool) { return os.LookupEnv(envName(name)) }},
		{"context", fromMap(ctx)},
		{"config section " + sectionOf(cmd), fromMap(sec)},
		{"config", fromMap(s.raw)},
	}
	// level says where a flag's value comes from: 0 the command line, then
	// the sources in order, len(sources)+1 nowhere (its default).
	level := func(f *pflag.Flag) (int, any) {
		if f.Changed {
			return 0, nil
		}
		for i, src := range sources {
			if v, ok := src.vals(f.Name); ok {
				return i + 1, v
			}
		}
		return len(sources) + 1, nil
	}
	credLevel := len(sources) + 1
	for _, name := range credentialFlags {
		if f := cmd.Flags().Lookup(name); f != nil {
			l, _ := level(f)
			credLevel = min(credLevel, l)
		}
	}
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" || f.Name == "context" {
			return
		}
		l, val := level(f)
		if l == 0 || l > len(sources) || (slices.Contains(credentialFlags, f.Name) && l != credLevel) {
			return
		}
		if err := setFlag(f, val); err != nil {
			errs = append(errs, fmt.Sprintf("--%s from the %s: %v", f.Name, sources[l-1].what, err))
		}
	})
	if len(errs) > 0 {
		return usageErrorf("invalid settings: %s", strings.Join(errs, "; "))
	}
	return nil
}

// setFlag writes a config value into a flag, turning YAML lists and maps
// into the flag syntax (a,b and k=v,k2=v2).
func setFlag(f *pflag.Flag, val any) error {
	var s string
	switch x := val.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		s = strings.Join(parts, ",")
	case map[string]any:
		parts := make([]string, 0, len(x))
		for k, p := range x {
			parts = append(parts, k+"="+fmt.Sprint(p))
		}
		sort.Strings(parts)
		s = strings.Join(parts, ",")
	default:
		s = fmt.Sprint(x)
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.Replace(strings.Split(s, ","))
	}
	return f.Value.Set(s)
}

// save writes the document back, readable by its owner only: it may hold
// tokens. It replaces the file in one rename, so a crash leaves the old one.
func (s *settings) save() error {
	if s.path == "" {
		return errors.New("no config file: set --config or PROPELLER_CONFIG (HOME is not set)")
	}
	b, err := yaml.Marshal(s.raw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(s.path, b, 0o600)
}
