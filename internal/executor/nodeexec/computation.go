package nodeexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/blob"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeauth"
)

// File is a local file shipped to nodes as a blob.
type File struct {
	Path string
	Sum  string // hex SHA-256 of the contents
	Mode os.FileMode
	Size int64
}

// HashFile returns the File for path.
func HashFile(path string) (*File, error) {
	sum, fi, err := blob.HashFile(path)
	if err != nil {
		return nil, err
	}
	return &File{Path: path, Sum: sum, Mode: fi.Mode().Perm(), Size: fi.Size()}, nil
}

// Depend is a file staged into every job directory on the node.
type Depend struct {
	Name string // relative to the job directory
	File *File
}

// Computation is what runs on the nodes; build it once and share it
// between the executors of all nodes, so files are hashed once.
type Computation struct {
	Func        string // registered function; "" for a program
	Setup       string
	Fingerprint string
	Executable  *File // the client's executable, for Func
	Program     *File
	ProgramName string
	Depends     []Depend
	Env         []string
	Grace       time.Duration
	// GOOS and GOARCH are the platform Executable is built for; "" means
	// this process's (a shared scheduler relays other clients'
	// executables).
	GOOS, GOARCH string
	// Exclusive asks the node to run the computation alone: not while
	// computations opened before it are active, and none opened after it
	// while it has jobs (sched.TenantConfig.Exclusive).
	Exclusive bool
}

// platform returns the platform the computation's executable is built for.
func (c *Computation) platform() (goos, goarch string) {
	goos, goarch = c.GOOS, c.GOARCH
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	return goos, goarch
}

func blobProto(f *File) *drovev1.Blob {
	return &drovev1.Blob{Sum: f.Sum, Mode: uint32(f.Mode), Size: uint64(f.Size)}
}

// upload sends f unless the node has it already.
func (e *Executor) upload(ctx context.Context, f *File) error {
	url := e.base + "/blobs/" + f.Sum
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return err
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("checking blob %s: %s", f.Path, resp.Status)
	}
	if limit := e.info.GetMaxFileSize(); limit > 0 && uint64(f.Size) > limit {
		return fmt.Errorf("%w: %s is %d bytes, node %s takes at most %d", ErrFileTooLarge, f.Path, f.Size, e.info.GetName(), limit)
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, url, fh)
	if err != nil {
		return err
	}
	req.ContentLength = f.Size
	// Sent again if the node restarted since the signing client learnt its
	// id (nodeauth.Transport).
	req.GetBody = func() (io.ReadCloser, error) { return os.Open(f.Path) }
	// A blob is named by its hash: the signature covers the file without
	// reading it twice, and the node checks the contents against the name.
	req.Header.Set(nodeauth.BodyHeader, f.Sum)
	resp, err = e.bulk.Do(req)
	if err != nil {
		return fmt.Errorf("sending %s: %w", f.Path, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sending %s: %s: %s", f.Path, resp.Status, msg)
	}
	e.sent.Add(f.Size)
	e.totalSent.Add(f.Size)
	e.cfg.Metrics.BlobSent(f.Size)
	return nil
}

// setup ships the computation's files the node lacks and opens the
// computation there.
func (e *Executor) setup(ctx context.Context) (*drovev1.SetupResponse, error) {
	goos, goarch := e.comp.platform()
	req := &drovev1.SetupRequest{
		ClientId:            e.cfg.ClientID,
		FuncName:            e.comp.Func,
		Setup:               e.comp.Setup,
		Fingerprint:         e.comp.Fingerprint,
		Goos:                goos,
		Goarch:              goarch,
		ProgramName:         e.comp.ProgramName,
		Env:                 e.comp.Env,
		Cpus:                int32(max(0, e.cfg.CPUs)),
		HeartbeatIntervalMs: uint32(e.cfg.Heartbeat / time.Millisecond),
		GraceMs:             uint64(e.comp.Grace / time.Millisecond),
		FileAcks:            true,
		Exclusive:           e.comp.Exclusive,
	}
	var files []*File
	if e.comp.Func != "" {
		if e.comp.Executable == nil {
			return nil, errors.New("drove: a function computation needs the executable")
		}
		files = append(files, e.comp.Executable)
		req.Executable = blobProto(e.comp.Executable)
	} else {
		if e.comp.Program == nil {
			return nil, errors.New("drove: a computation needs a function or a program")
		}
		files = append(files, e.comp.Program)
		req.Program = blobProto(e.comp.Program)
	}
	for _, d := range e.comp.Depends {
		files = append(files, d.File)
		req.Depends = append(req.Depends, &drovev1.Depend{Name: d.Name, Blob: blobProto(d.File)})
	}
	for _, f := range files {
		if err := e.upload(ctx, f); err != nil {
			return nil, &ConnError{Addr: e.cfg.Addr, Err: err}
		}
	}
	resp, err := e.api.Setup(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, &ConnError{Addr: e.cfg.Addr, Err: err}
	}
	return resp.Msg, nil
}
