package nodeexec

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/nodeauth"
)

// NewHTTPClient returns the HTTP client for talking to nodes: HTTP/2 (over
// TLS, or cleartext with prior knowledge), requests signed with secret if
// it is not empty.
func NewHTTPClient(secret string, tlsCfg *tls.Config) *http.Client {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone() // the transport sets its ALPN protocols in it
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	var p http.Protocols
	if tlsCfg != nil {
		p.SetHTTP2(true)
		p.SetHTTP1(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &p
	var rt http.RoundTripper = tr
	if secret != "" {
		rt = &nodeauth.Transport{Secret: secret, Base: tr}
	}
	return &http.Client{Transport: rt}
}

// newBulkClient returns the client for blob transfers: HTTP/1.1, one TCP
// connection per transfer, whose throughput is not bounded by HTTP/2's
// per-stream flow-control window.
func newBulkClient(secret string, tlsCfg *tls.Config) *http.Client {
	if tlsCfg != nil {
		// Offer only HTTP/1.1 in ALPN, or the node picks h2.
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	tr := &http.Transport{
		DialContext:     (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig: tlsCfg,
		WriteBufferSize: 256 << 10,
		ReadBufferSize:  256 << 10,
		// Below the node's --idle-timeout (2 min): the client drops an
		// idle connection first, so an upload never starts on one the
		// node is closing (a PUT is not retried on a stale connection).
		IdleConnTimeout: 90 * time.Second,
	}
	var p http.Protocols
	p.SetHTTP1(true)
	tr.Protocols = &p
	var rt http.RoundTripper = tr
	if secret != "" {
		rt = &nodeauth.Transport{Secret: secret, Base: tr}
	}
	return &http.Client{Transport: rt}
}

func baseURL(addr string, tlsCfg *tls.Config) string {
	if tlsCfg != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// newAPI returns the API client. It does not ask for compressed answers:
// on a LAN, gzip costs more CPU than it saves time (it was the largest
// cost of a no-op job).
func newAPI(hc *http.Client, base string) drovev1connect.NodeServiceClient {
	return drovev1connect.NewNodeServiceClient(hc, base, connect.WithAcceptCompression("gzip", nil, nil))
}

// Info asks the node at addr to describe itself.
func Info(ctx context.Context, hc *http.Client, addr string, tlsCfg *tls.Config) (*drovev1.InfoResponse, error) {
	api := newAPI(hc, baseURL(addr, tlsCfg))
	resp, err := api.Info(ctx, connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		return nil, &ConnError{Addr: addr, Err: err}
	}
	return resp.Msg, nil
}

// retry calls f until it succeeds or the executor stops; it reports false
// in the latter case.
func (e *Executor) retry(f func(ctx context.Context) error) bool {
	var wait backoff
	for {
		err := f(e.ctx)
		if err == nil {
			return true
		}
		if e.ctx.Err() != nil {
			return false
		}
		if connect.CodeOf(err) == connect.CodeNotFound {
			e.nodeDown(fmt.Errorf("%w: %w", ErrGone, err))
			return false
		}
		e.log.Debug("node request failed; retrying", "node", e.Name(), "err", err)
		select {
		case <-e.ctx.Done():
			return false
		case <-time.After(wait.next(e)):
		}
	}
}
