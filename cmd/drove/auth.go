package main

import (
	"crypto/tls"

	"github.com/spf13/pflag"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/nodeauth"
)

// clientAuth is how a client command authenticates to drove nodes: the
// cluster secret and mutual TLS, as drove node takes them.
type clientAuth struct {
	secret, secretFile        string
	certFile, keyFile, caFile string
}

func (a *clientAuth) register(f *pflag.FlagSet) {
	f.StringVarP(&a.secret, "secret", "s", "", "cluster secret to sign requests to drove nodes with (prefer --secret-file or $"+secretEnv+": command lines are visible to other users)")
	f.StringVar(&a.secretFile, "secret-file", "", "file holding the cluster secret")
	f.StringVar(&a.certFile, "tls-cert", "", "TLS certificate of this client (PEM), for nodes that require mutual TLS")
	f.StringVar(&a.keyFile, "tls-key", "", "key of --tls-cert (PEM)")
	f.StringVar(&a.caFile, "tls-ca", "", "cluster CA (PEM): nodes must present a certificate it signed")
}

// resolve returns the secret (the flag, the file or $DROVE_SECRET) and,
// with --tls-ca, the TLS configuration.
func (a *clientAuth) resolve() (string, *tls.Config, error) {
	secret, err := resolveSecret(a.secret, a.secretFile)
	if err != nil {
		return "", nil, err
	}
	if a.caFile == "" {
		return secret, nil, nil
	}
	tc, err := nodeauth.ClientTLS(a.certFile, a.keyFile, a.caFile)
	return secret, tc, err
}

// options are the cluster options for the flags.
func (a *clientAuth) options() ([]drove.Option, error) {
	secret, _, err := a.resolve()
	if err != nil {
		return nil, err
	}
	opts := []drove.Option{drove.WithSecret(secret)}
	if a.caFile != "" {
		opts = append(opts, drove.WithTLS(a.certFile, a.keyFile, a.caFile))
	}
	return opts, nil
}
