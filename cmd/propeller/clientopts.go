package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/standalone"
)

// clientOptions say which manager the CLI talks to and how it prints.
type clientOptions struct {
	*globalOptions
	context   string
	server    string
	token     string
	tokenFile string
	tlsCA     string
	dataDir   string
	output    string
	noHeaders bool
	// out prints results; client sets it from --output.
	out *printer
}

func (o *clientOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.context, "context", "", "context of the config file to use (default: its current-context)")
	fs.StringVar(&o.server, "server", "http://127.0.0.1:7070", "manager REST URL")
	fs.StringVar(&o.token, "token", "", "REST bearer token (default: read from --token-file or <data-dir>/api-token)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the REST bearer token")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "CA bundle (PEM) that signed the manager's HTTPS certificate (default: the system's)")
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "manager data dir to read api-token from when no token is given")
	fs.StringVarP(&o.output, "output", "o", "table", outputHelp)
	fs.BoolVar(&o.noHeaders, "no-headers", false, "leave out the header line of table and wide output")
}

// client resolves the settings (flags, environment, context, config file)
// and checks them before anything is sent.
func (o *clientOptions) client(cmd *cobra.Command) (*rest.Client, error) {
	if err := o.resolveFlags(cmd); err != nil {
		return nil, err
	}
	var err error
	if o.out, err = newPrinter(o.output, o.noHeaders); err != nil {
		return nil, err
	}
	tok := o.token
	if tok == "" {
		file := o.tokenFile
		if file == "" {
			file = filepath.Join(o.dataDir, standalone.APITokenFile)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usageErrorf("no token: pass --token or PROPELLER_TOKEN, point --token-file/--data-dir at the manager's api-token, or use a context (%v)", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	var tlsCfg *tls.Config
	if o.tlsCA != "" {
		pem, err := os.ReadFile(o.tlsCA)
		if err != nil {
			return nil, usageErrorf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("--tls-ca %s: no PEM certificates", o.tlsCA)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	c, err := rest.NewClient(o.server, tok, rest.WithTLSConfig(tlsCfg), rest.WithUserAgent("propeller-cli/"+buildVersion()))
	if err != nil {
		return nil, usageErrorf("--server: %v", err)
	}
	return c, nil
}

// print writes a result in the --output format.
func (o *clientOptions) print(cmd *cobra.Command, v view) error {
	return o.out.print(cmd.OutOrStdout(), v)
}
