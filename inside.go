package drove

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/drove-dev/drove/internal/worker"
)

// ErrNotInJob is returned by Provisional and SendFile when ctx is not the
// context of a running job.
var ErrNotInJob = errors.New("drove: not called with a running job's context")

// Provisional sends v as an intermediate result of the running job: the
// job's status becomes ProvisionalResult, job callbacks fire with v, and the
// job goes on. Call it with the context the function was given; v must be
// of the function's result type.
func Provisional[Out any](ctx context.Context, v Out) error {
	j := worker.FromContext(ctx)
	if j == nil {
		return ErrNotInJob
	}
	b, err := gobEncode(v)
	if err != nil {
		return fmt.Errorf("drove: encoding provisional result: %w", err)
	}
	return j.Provisional(b)
}

// SendFile sends the file at path back to the client, which writes it to
// its destination directory (see WithDestDir) under the same relative path,
// or under its base name when path is absolute or climbs out with "..".
// Call it with the context the function was given. It returns once the
// client has the file; if the client refused it (a name that leads out of
// the destination directory through a symbolic link there, a file over
// WithMaxFileSize, a failed write), the error wraps ErrFileRefused.
func SendFile(ctx context.Context, path string) error {
	j := worker.FromContext(ctx)
	if j == nil {
		return ErrNotInJob
	}
	name := filepath.Clean(path)
	if !filepath.IsLocal(name) {
		name = filepath.Base(name)
	}
	if err := j.SendFile(path, name); err != nil {
		return fmt.Errorf("drove: sending %s: %w", path, err)
	}
	return nil
}
