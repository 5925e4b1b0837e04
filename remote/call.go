package remote

import (
	"context"
	"sync"
	"time"
)

// transferGrace is how long a cancelled transfer may take to stop by
// itself, removing its temporary files, before the call returns anyway.
const transferGrace = 2 * time.Second

// call runs f, which makes SFTP requests, and returns its result, or ctx's
// error as soon as ctx ends if f has not returned by then (after up to
// grace, for f that clean up after themselves on cancellation).
//
// pkg/sftp's requests take no context (but ReadDir's), and an SFTP server
// that stopped answering (stopped, or stuck on a hung file system) would
// hold the caller for ever. SFTP has no way to abort a request, so an
// abandoned f keeps running until the server answers or the session ends
// (at the latest when the Host is closed); its effect may still happen on
// the server, and discard, if not nil, is given what it returns then (an
// open file to close). Nothing shared is closed: other calls on the Host
// go on.
func call[T any](ctx context.Context, h *Host, grace time.Duration, f func() (T, error), discard func(T)) (T, error) {
	if ctx.Done() == nil {
		return f()
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	h.mu.Lock()
	if h.closed {
		// Nothing can hang: the session is closed.
		h.mu.Unlock()
		return f()
	}
	// Close waits for abandoned calls, which end when it closes the
	// session.
	h.wg.Add(1)
	h.mu.Unlock()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	var mu sync.Mutex
	gone := false
	go func() {
		defer h.wg.Done()
		v, err := f()
		mu.Lock()
		defer mu.Unlock()
		if gone {
			if err == nil && discard != nil {
				discard(v)
			}
			return
		}
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
	}
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case r := <-ch:
			return r.v, r.err
		case <-t.C:
		}
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case r := <-ch: // f returned meanwhile
		return r.v, r.err
	default:
	}
	gone = true
	var zero T
	return zero, ctx.Err()
}

// call0 is call for f that return only an error.
func call0(ctx context.Context, h *Host, grace time.Duration, f func() error) error {
	_, err := call(ctx, h, grace, func() (struct{}, error) { return struct{}{}, f() }, nil)
	return err
}
