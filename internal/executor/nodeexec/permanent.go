package nodeexec

import (
	"crypto/tls"
	"errors"
	"strings"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/nodeauth"
)

// Permanent reports errors that dialling a node again will not fix:
// another platform, a refused secret or certificate, a computation the
// node cannot run (a fingerprint mismatch, a failing setup, a file over its
// --max-file-size). Clients and
// the shared scheduler give such a node up instead of retrying it.
func Permanent(err error) bool {
	var cve *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrPlatform), errors.Is(err, ErrFileTooLarge), errors.Is(err, nodeauth.ErrUnauthenticated), errors.As(err, &cve):
		return true
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeFailedPrecondition, connect.CodeInvalidArgument:
		return true
	}
	// A TLS alert from the node (it refused our certificate) arrives as
	// text only.
	return strings.Contains(err.Error(), "remote error: tls:")
}
