package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/nodeauth"
)

func newCertCmd() *cobra.Command {
	var (
		dir   string
		valid time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cert {ca | node NAME [HOST...] | client NAME}",
		Short: "Create a cluster CA and node or client certificates for mutual TLS",
		Long: `Create the certificates for mutual TLS between drove clients and nodes.

  drove cert ca                      writes ca.pem and ca-key.pem
  drove cert node NAME [HOST...]     writes NAME.pem and NAME-key.pem, signed by the CA,
                                     valid for the given host names and addresses
  drove cert client NAME             writes NAME.pem and NAME-key.pem for a client

Give nodes --tls-cert NAME.pem --tls-key NAME-key.pem --tls-ca ca.pem, and
clients their own certificate with the same CA. Keep ca-key.pem off the
nodes: it is only needed to issue certificates. Existing files are never
overwritten.`,
		Example: `  drove cert ca
  drove cert node node1 node1.example.com 10.0.0.5
  drove cert client alice`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := func(name string, cert, key []byte) error {
				cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
				if err := writeNew(cp, cert, 0o644); err != nil {
					return err
				}
				if err := writeNew(kp, key, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", cp, kp)
				return nil
			}
			switch args[0] {
			case "ca":
				if len(args) != 1 {
					return fmt.Errorf("drove cert ca takes no more arguments")
				}
				cert, key, err := nodeauth.NewCA("drove cluster CA", valid)
				if err != nil {
					return err
				}
				return out("ca", cert, key)
			case "node", "client":
				if len(args) < 2 || (args[0] == "client" && len(args) != 2) {
					return fmt.Errorf("drove cert %s needs a NAME", args[0])
				}
				caCert, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
				if err != nil {
					return fmt.Errorf("reading the CA (run drove cert ca first): %w", err)
				}
				caKey, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
				if err != nil {
					return fmt.Errorf("reading the CA key: %w", err)
				}
				kind := nodeauth.CertClient
				hosts := args[2:]
				if args[0] == "node" {
					kind = nodeauth.CertNode
					hosts = append([]string{args[1]}, hosts...)
				}
				cert, key, err := nodeauth.IssueCert(caCert, caKey, kind, args[1], hosts, valid)
				if err != nil {
					return err
				}
				return out(args[1], cert, key)
			}
			return fmt.Errorf("unknown certificate kind %q: want ca, node or client", args[0])
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "d", ".", "directory for the files")
	cmd.Flags().DurationVar(&valid, "valid", 10*365*24*time.Hour, "how long the certificate is valid")
	return cmd
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
