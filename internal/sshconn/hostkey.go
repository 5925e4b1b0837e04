package sshconn

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// hostKeys caches parsed known_hosts databases. A file appended to by
// accept-new is re-read on the next use.
type hostKeys struct {
	mu  sync.Mutex
	dbs map[string]*knownhosts.HostKeyDB // by strings.Join(files, "\x00")
}

// db returns the database for files, skipping files that do not exist. It
// returns nil when none exists: every key is then unknown.
func (h *hostKeys) db(files []string) (*knownhosts.HostKeyDB, error) {
	k := strings.Join(files, "\x00")
	h.mu.Lock()
	defer h.mu.Unlock()
	if db, ok := h.dbs[k]; ok {
		return db, nil
	}
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remote: known_hosts: %w", err)
		}
	}
	var db *knownhosts.HostKeyDB
	if len(existing) > 0 {
		var err error
		if db, err = knownhosts.NewDB(existing...); err != nil {
			return nil, fmt.Errorf("remote: known_hosts: %w", err)
		}
	}
	if h.dbs == nil {
		h.dbs = make(map[string]*knownhosts.HostKeyDB)
	}
	h.dbs[k] = db
	return db, nil
}

// algorithms returns the host key algorithms known_hosts lists for addr, so
// that the server is asked for a key we can verify rather than whichever it
// prefers. Nil lets x/crypto/ssh use its defaults.
func (h *hostKeys) algorithms(e Endpoint) []string {
	db, err := h.db(e.KnownHostsFiles)
	if err != nil || db == nil {
		return nil
	}
	return db.HostKeyAlgorithms(e.Addr())
}

// callback returns the host key check for e. A refusal is stored in *refused
// so the dialler can return it unwrapped.
func (h *hostKeys) callback(e Endpoint, refused **HostKeyError) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		db, err := h.db(e.KnownHostsFiles)
		if err != nil {
			return err
		}
		var checkErr error
		if db == nil {
			checkErr = &unknownKey{}
		} else {
			checkErr = db.HostKeyCallback()(hostname, remote, key)
		}
		if checkErr == nil {
			return nil
		}
		hke := &HostKeyError{Host: e.Target, Addr: e.Addr(), Key: key, Files: e.KnownHostsFiles, Err: checkErr}
		switch {
		case knownhosts.IsHostKeyChanged(checkErr):
			hke.Changed = true
		case knownhosts.IsHostUnknown(checkErr) || isUnknown(checkErr):
			if e.AcceptNew {
				return h.appendKey(e, hostname, remote, key)
			}
			hke.Err = nil
		default:
			return checkErr // a malformed file, for example
		}
		*refused = hke
		return hke
	}
}

// appendKey records key for hostname in the first known_hosts file.
func (h *hostKeys) appendKey(e Endpoint, hostname string, remote net.Addr, key ssh.PublicKey) error {
	file := e.KnownHostsFiles[0]
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("remote: accept-new: %w", err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("remote: accept-new: %w", err)
	}
	err = knownhosts.WriteKnownHost(f, hostname, remote, key)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("remote: accept-new: %w", err)
	}
	// Forget every cached database: any of them may include this file.
	clear(h.dbs)
	return nil
}

type unknownKey struct{}

func (*unknownKey) Error() string { return "host key not in known_hosts" }

func isUnknown(err error) bool {
	var u *unknownKey
	return errors.As(err, &u)
}
