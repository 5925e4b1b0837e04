package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrDirInUse is wrapped by New's error when another daemon holds the
// directory: two daemons sharing one would mix their blobs, computations
// and the results they keep for clients.
var ErrDirInUse = errors.New("directory in use by another drove daemon")

// dirLock is an exclusive flock on Dir/lock, held for the daemon's life
// and released by the kernel if the process dies.
type dirLock struct{ f *os.File }

// lockDir takes dir's lock or says who holds it.
func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("drove: node: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("drove: node: %s: %w (%s); give each daemon on a machine its own --dest-path", dir, ErrDirInUse, holder)
		}
		return nil, fmt.Errorf("drove: node: locking %s: %w", path, err)
	}
	// Who holds it, for the next one's error; the lock is the flock, not
	// the content.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &dirLock{f: f}, nil
}

// release gives the lock up; a nil lock does nothing.
func (l *dirLock) release() {
	if l != nil {
		l.f.Close()
	}
}
