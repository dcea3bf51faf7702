package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
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
	fs.StringVar(&o.configFile, "config", "", "YAML config file; its keys are flag names, top level or under the command's section (manager, proplet, client)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
}

func (o *globalOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
}

// envName is the environment variable that sets a flag:
// --http-addr is PROPELLER_HTTP_ADDR.
func envName(flag string) string {
	return envPrefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flag))
}

// resolveFlags fills every flag the user did not set on the command line
// from, in order, its PROPELLER_* environment variable, the config file
// (under section, then top level), and otherwise leaves its default. This
// is the only place that knows viper; commands read typed options.
func resolveFlags(cmd *cobra.Command, configFile, section string) error {
	v := viper.New()
	if configFile != "" {
		v.SetConfigFile(configFile)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("read config %s: %w", configFile, err)
		}
	}
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		val, ok := lookupSetting(v, f.Name, section)
		if !ok {
			return
		}
		if err := setFlag(f, val); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", f.Name, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("invalid settings: %s", strings.Join(errs, "; "))
	}
	return nil
}

func lookupSetting(v *viper.Viper, name, section string) (any, bool) {
	if val, ok := os.LookupEnv(envName(name)); ok {
		return val, true
	}
	if section != "" && v.InConfig(section+"."+name) {
		return v.Get(section + "." + name), true
	}
	if v.InConfig(name) {
		return v.Get(name), true
	}
	return nil, false
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
