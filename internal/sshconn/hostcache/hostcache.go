package hostcache

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/blob"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
)

// Platform is an operating system and architecture in Go's terms
// (GOOS and GOARCH).
type Platform struct {
	OS, Arch string
}

// String returns "os/arch".
func (p Platform) String() string { return p.OS + "/" + p.Arch }

// Local returns the platform this program was built for.
func Local() Platform { return Platform{runtime.GOOS, runtime.GOARCH} }

// unameOS maps `uname -s` to GOOS.
var unameOS = map[string]string{
	"Linux":     "linux",
	"Darwin":    "darwin",
	"FreeBSD":   "freebsd",
	"OpenBSD":   "openbsd",
	"NetBSD":    "netbsd",
	"DragonFly": "dragonfly",
	"SunOS":     "solaris",
	"illumos":   "illumos",
	"AIX":       "aix",
}

// unameArch maps `uname -m` to GOARCH.
var unameArch = map[string]string{
	"x86_64": "amd64", "amd64": "amd64",
	"i386": "386", "i486": "386", "i586": "386", "i686": "386", "i86pc": "386",
	"aarch64": "arm64", "arm64": "arm64", "aarch64_be": "arm64be",
	"armv5l": "arm", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm", "arm": "arm",
	"ppc64le": "ppc64le", "ppc64": "ppc64", "powerpc64": "ppc64", "powerpc": "ppc",
	"s390x":   "s390x",
	"riscv64": "riscv64",
	"mips64":  "mips64", "mips64el": "mips64le", "mips": "mips", "mipsel": "mipsle",
	"loongarch64": "loong64",
}

// ParseUname returns the platform that the output of `uname -sm` names:
// "Linux x86_64" is linux/amd64. Unknown systems and machines are errors.
func ParseUname(s string) (Platform, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Platform{}, fmt.Errorf("drove: cannot read the platform from uname -sm output %q", s)
	}
	goos, ok := unameOS[f[0]]
	if !ok {
		return Platform{}, fmt.Errorf("drove: unknown operating system %q (uname -sm: %q)", f[0], s)
	}
	arch, ok := unameArch[f[1]]
	if !ok {
		return Platform{}, fmt.Errorf("drove: unknown machine %q (uname -sm: %q)", f[1], s)
	}
	if goos == "solaris" && arch == "386" {
		// uname -m says i86pc on every x86 Solaris; Go runs it as amd64.
		arch = "amd64"
	}
	return Platform{goos, arch}, nil
}

// ErrPlatform means that the host's platform is not the one the executable
// was built for. The error is a [*PlatformError].
var ErrPlatform = errors.New("host platform differs from the executable's")

// PlatformError reports a host whose platform is not the executable's.
type PlatformError struct {
	Target string   // the host as given
	Uname  string   // what `uname -sm` printed there
	Host   Platform // the host's platform
	Binary Platform // the executable's
}

// Error names the host and both platforms.
func (e *PlatformError) Error() string {
	return fmt.Sprintf("drove: %s is %s (uname -sm: %s) but the executable is built for %s", e.Target, e.Host, e.Uname, e.Binary)
}

// Is makes errors.Is(err, ErrPlatform) true.
func (e *PlatformError) Is(target error) bool { return target == ErrPlatform }

// ErrNoCache means that the cache directory on the host cannot be created
// or written. The error is a [*CacheError].
var ErrNoCache = errors.New("no writable cache directory on the host")

// CacheError reports a cache directory that cannot be used.
type CacheError struct {
	Target string // the host as given
	Dir    string // the directory
	Err    error  // why
}

// Error names the host, the directory and the cause.
func (e *CacheError) Error() string {
	return fmt.Sprintf("drove: %s: cache %s cannot be used: %v", e.Target, e.Dir, e.Err)
}

// Unwrap returns the cause.
func (e *CacheError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNoCache) true.
func (e *CacheError) Is(target error) bool { return target == ErrNoCache }

// ErrNotExecutable means that a file installed in the host's cache does
// not run there: its file system is mounted noexec, or the file is not a
// program the host can run. The error is an [*ExecError].
var ErrNotExecutable = errors.New("installed executable does not run on the host")

// ExecError reports an installed executable that failed to run with a
// harmless argument.
type ExecError struct {
	Target string // the host as given
	Path   string // the installed file
	Code   int    // its exit code; -1 if it died of a signal
	Output string // what it printed (at most a few lines)
}

// Error names the host and the file, and says what may be wrong.
func (e *ExecError) Error() string {
	msg := fmt.Sprintf("drove: %s: %s does not run (exit %d", e.Target, e.Path, e.Code)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	msg += ")"
	if e.Code == 126 {
		msg += "; is its file system mounted noexec?"
	}
	return msg
}

// Is makes errors.Is(err, ErrNotExecutable) true.
func (e *ExecError) Is(target error) bool { return target == ErrNotExecutable }

// Blob is a local file to install, with its content hash computed once so
// that it can go to many hosts.
type Blob struct {
	Path string // the local file
	Sum  string // SHA-256 of its content, in hex
	Size int64
	// Platform is the GOOS/GOARCH a Go executable was built for, from its
	// build information; the zero Platform for any other file.
	Platform Platform
	info     fs.FileInfo
}

// NewBlob reads the local regular file path and returns it as a Blob.
func NewBlob(path string) (*Blob, error) {
	sum, fi, err := blob.HashFile(path)
	if err != nil {
		return nil, err
	}
	b := &Blob{Path: path, Sum: sum, Size: fi.Size(), info: fi}
	if bi, err := buildinfo.ReadFile(path); err == nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "GOOS":
				b.Platform.OS = s.Value
			case "GOARCH":
				b.Platform.Arch = s.Value
			}
		}
	}
	return b, nil
}

// Host is an SSH host as [Probe] found it. Its fields are read-only.
type Host struct {
	Pool   *sshconn.Pool
	Target string // as given to Probe
	// Uname is what `uname -sm` printed, Platform what it means.
	Uname    string
	Platform Platform
	Home     string // $HOME
	// Dir is the cache directory: ${XDG_CACHE_HOME:-$HOME/.cache}/drove.
	Dir string
	// Addr is the address the SSH connection reached the host at, as the
	// host sees it (the third field of $SSH_CONNECTION); empty if sshd did
	// not say. A daemon that should be reached the way the host was binds
	// it.
	Addr string
}

// probeMarker starts the probe's output, after whatever the login shell
// printed first.
const probeMarker = "drove-probe"

// probeScript prints, after the marker, one line each: uname -sm, $HOME,
// $XDG_CACHE_HOME and $SSH_CONNECTION.
const probeScript = `u=$(uname -sm 2>/dev/null); printf '%s\n' ` + probeMarker + ` "$u" "$HOME" "${XDG_CACHE_HOME-}" "${SSH_CONNECTION-}"`

// Probe asks target, over pool, for its platform, home and cache
// directory, through the user's login shell as `ssh target command`
// would. An unknown platform is an error; so is a host that cannot be
// reached ([*sshconn.ConnError]).
func Probe(ctx context.Context, pool *sshconn.Pool, target string) (*Host, error) {
	var out, errb bytes.Buffer
	st, err := pool.RunLeader(ctx, target, &sshconn.Cmd{Command: probeScript, Stdout: &out, Stderr: &errb})
	if err != nil {
		return nil, err
	}
	if st.Code != 0 {
		return nil, fmt.Errorf("drove: %s: probing the host failed (exit %d): %s", target, st.Code, firstLines(errb.String(), 3))
	}
	text := out.String()
	i := strings.LastIndex(text, probeMarker+"\n")
	if i < 0 {
		return nil, fmt.Errorf("drove: %s: no answer to the probe in %q", target, firstLines(text, 3))
	}
	lines := strings.Split(text[i+len(probeMarker)+1:], "\n")
	if len(lines) < 4 {
		return nil, fmt.Errorf("drove: %s: short answer to the probe: %q", target, text[i:])
	}
	h := &Host{Pool: pool, Target: target, Uname: strings.TrimSpace(lines[0]), Home: lines[1]}
	if h.Uname == "" {
		return nil, fmt.Errorf("drove: %s: uname -sm printed nothing: %s", target, firstLines(errb.String(), 3))
	}
	if h.Platform, err = ParseUname(h.Uname); err != nil {
		return nil, fmt.Errorf("%w on %s", err, target)
	}
	if f := strings.Fields(lines[3]); len(f) == 4 {
		h.Addr = f[2]
	}
	switch xdg := lines[2]; {
	case path.IsAbs(xdg):
		h.Dir = path.Join(xdg, "drove")
	case path.IsAbs(h.Home):
		h.Dir = path.Join(h.Home, ".cache", "drove")
	default:
		return nil, &CacheError{Target: target, Dir: "~/.cache/drove", Err: fmt.Errorf("$HOME is %q, not an absolute path", h.Home)}
	}
	return h, nil
}

// BlobDir returns the directory of the content-addressed blobs.
func (h *Host) BlobDir() string { return path.Join(h.Dir, "blobs") }

// BlobPath returns where the blob with SHA-256 sum lives on the host.
func (h *Host) BlobPath(sum string) string { return path.Join(h.BlobDir(), sum) }

// SFTP returns the pool's SFTP session for the host.
func (h *Host) SFTP(ctx context.Context) (*sshconn.SFTP, error) { return h.Pool.SFTP(ctx, h.Target) }

// MkdirPrivate creates the directory dir (an absolute path) on the host
// with its missing parents, and sets dir's mode to 0700. A directory that
// cannot be created or changed is a [*CacheError].
func (h *Host) MkdirPrivate(ctx context.Context, dir string) error {
	s, err := h.SFTP(ctx)
	if err != nil {
		return err
	}
	if err := s.MkdirAll(dir); err != nil {
		return h.cacheErr(s, dir, err)
	}
	if err := s.Chmod(dir, 0o700); err != nil {
		return h.cacheErr(s, dir, err)
	}
	return nil
}

// cacheErr returns err as a [*CacheError], unless the session or its
// connection was lost.
func (h *Host) cacheErr(s *sshconn.SFTP, dir string, err error) error {
	err = s.ConnErr(sftpengine.UnwrapPath(err), false)
	if sshconn.IsHostError(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &CacheError{Target: h.Target, Dir: dir, Err: err}
}

// Installed says where [Host.Install] put a blob and whether it sent it.
type Installed struct {
	Path     string // the file on the host
	Uploaded bool   // false when the host already had it
}

// Install puts b into the host's cache as BlobPath(b.Sum) with mode perm,
// unless a regular file of that name and size is there already (its mode
// is then set to perm if it differs). The cache directories are created
// 0700 first. The file is written under a temporary name and renamed, so
// the blob is never partial, and two installs of the same blob at once are
// harmless. Cancelling ctx stops the upload and removes the temporary
// file.
func (h *Host) Install(ctx context.Context, b *Blob, perm fs.FileMode) (Installed, error) {
	dst := h.BlobPath(b.Sum)
	if err := h.MkdirPrivate(ctx, h.Dir); err != nil {
		return Installed{}, err
	}
	if err := h.MkdirPrivate(ctx, h.BlobDir()); err != nil {
		return Installed{}, err
	}
	s, err := h.SFTP(ctx)
	if err != nil {
		return Installed{}, err
	}
	if fi, err := s.Stat(dst); err == nil && fi.Mode().IsRegular() && fi.Size() == b.Size {
		if fi.Mode().Perm() != perm {
			if err := s.Chmod(dst, perm); err != nil {
				return Installed{}, h.cacheErr(s, dst, err)
			}
		}
		return Installed{Path: dst}, nil
	}
	err = sftpengine.UploadFile(ctx, s, b.Path, dst, modeInfo{b.info, perm, time.Now()}, nil)
	if err != nil {
		return Installed{}, h.cacheErr(s, h.BlobDir(), err)
	}
	return Installed{Path: dst, Uploaded: true}, nil
}

// modeInfo is a FileInfo with another mode and modification time, for the
// upload of a blob (its mtime is when it arrived, so that a cache can be
// pruned by age).
type modeInfo struct {
	fs.FileInfo
	perm  fs.FileMode
	mtime time.Time
}

func (m modeInfo) Mode() fs.FileMode  { return m.perm }
func (m modeInfo) ModTime() time.Time { return m.mtime }

// CheckPlatform returns a [*PlatformError] if b is a Go executable built
// for another platform than the host's. Other files pass.
func (h *Host) CheckPlatform(b *Blob) error {
	if b.Platform == (Platform{}) || b.Platform == h.Platform {
		return nil
	}
	return &PlatformError{Target: h.Target, Uname: h.Uname, Host: h.Platform, Binary: b.Platform}
}

// InstallExecutable checks that b can run on the host's platform
// ([Host.CheckPlatform]), installs it with mode 0700 ([Host.Install]) and,
// if checkArgs is not empty, runs it with them (something harmless such as
// "version"), which must exit 0: a file that does not run there, as on a
// noexec file system, is an [*ExecError].
func (h *Host) InstallExecutable(ctx context.Context, b *Blob, checkArgs ...string) (Installed, error) {
	if err := h.CheckPlatform(b); err != nil {
		return Installed{}, err
	}
	in, err := h.Install(ctx, b, 0o700)
	if err != nil {
		return in, err
	}
	if len(checkArgs) > 0 {
		if err := h.CheckExec(ctx, in.Path, checkArgs...); err != nil {
			return in, err
		}
	}
	return in, nil
}

// CheckExec runs the file p on the host with args and returns an
// [*ExecError] unless it exits 0.
func (h *Host) CheckExec(ctx context.Context, p string, args ...string) error {
	words := []string{sshconn.Quote(p)}
	for _, a := range args {
		words = append(words, sshconn.Quote(a))
	}
	var out lockedBuffer
	st, err := h.Pool.RunLeader(ctx, h.Target, &sshconn.Cmd{Command: strings.Join(words, " "), Stdout: &out, Stderr: &out})
	if err != nil {
		return err
	}
	if st.Code != 0 {
		return &ExecError{Target: h.Target, Path: p, Code: st.Code, Output: firstLines(out.String(), 3)}
	}
	return nil
}

// lockedBuffer is a buffer for a command's stdout and stderr together,
// which are written from two goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// firstLines returns at most n lines of s, trimmed, joined with "; ".
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "; ")
}
