package sshtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Entry is one file of a [Hostile] server's tree, listed exactly as given.
type Entry struct {
	// Name is the name listed, any bytes ("/", "..", "a/b", "").
	Name string
	// Mode holds the type (fs.ModeDir, fs.ModeSymlink, none for a regular
	// file) and the permissions.
	Mode fs.FileMode
	// Data is a regular file's content.
	Data []byte
	// Target is a symbolic link's target.
	Target string
}

// Tree returns the listing of the directory dir (a clean absolute path, as
// the client asked for it), or false if dir is no directory.
type Tree func(dir string) ([]Entry, bool)

// Listings returns a Tree listing m[dir].
func Listings(m map[string][]Entry) Tree {
	return func(dir string) ([]Entry, bool) {
		e, ok := m[dir]
		return e, ok
	}
}

// Hostile is an SSH server running in the test process whose SFTP subsystem
// serves a made-up, read-only tree: it lists whatever names the test gives,
// which no real file system has, and the test can change the tree between
// two calls. It knows no commands. All exported fields are read-only.
type Hostile struct {
	// Addr is the listening address, on 127.0.0.1.
	Addr string
	// Alias is the ssh_config Host alias naming Addr ("hostile").
	Alias string
	// SSHConfig, KnownHosts and KeyPath are as in [Server]: an ssh_config
	// for Alias that logs in with KeyPath and pins the host key listed in
	// KnownHosts.
	SSHConfig, KnownHosts, KeyPath string

	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	tree  Tree
	lists int
	conns map[net.Conn]bool
}

// StartHostile starts a [Hostile] server serving tree until t ends.
func StartHostile(t testing.TB, tree Tree) *Hostile {
	t.Helper()
	dir := t.TempDir()
	hostSigner, _ := newKey(t, "hostile host")
	userSigner, userPEM := newKey(t, "hostile user")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	s := &Hostile{
		Addr: ln.Addr().String(), Alias: "hostile",
		SSHConfig:  filepath.Join(dir, "ssh_config"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
		KeyPath:    filepath.Join(dir, "id_ed25519"),
		ln:         ln, tree: tree, conns: map[net.Conn]bool{},
	}
	port := ln.Addr().(*net.TCPAddr).Port
	writeFile(t, s.KeyPath, userPEM, 0o600)
	writeFile(t, s.KnownHosts, fmt.Appendf(nil, "[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(hostSigner.PublicKey())), 0o644)
	writeFile(t, s.SSHConfig, fmt.Appendf(nil, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
		s.Alias, port, User, s.KeyPath, s.KnownHosts), 0o644)

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), userSigner.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Go(func() {
				s.serveConn(c, cfg)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			})
		}
	})
	t.Cleanup(s.close)
	return s
}

// SetTree replaces the tree served from the next request on.
func (s *Hostile) SetTree(tree Tree) {
	s.mu.Lock()
	s.tree = tree
	s.mu.Unlock()
}

// Lists returns how many directory listings the server has served.
func (s *Hostile) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

func (s *Hostile) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Hostile) serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Go(func() {
			defer ch.Close()
			var served sync.WaitGroup
			defer served.Wait()
			for req := range creqs {
				// The payload of a subsystem request is the name as an
				// SSH string: 4 length bytes, then "sftp".
				if req.Type != "subsystem" || !bytes.Equal(req.Payload, []byte("\x00\x00\x00\x04sftp")) {
					req.Reply(false, nil)
					continue
				}
				req.Reply(true, nil)
				served.Go(func() {
					h := handlers{s}
					rs := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
					rs.Serve()
					rs.Close()
					ch.Close()
				})
			}
		})
	}
}

// handlers answer the SFTP requests from the tree.
type handlers struct{ s *Hostile }

var errReadOnly = fmt.Errorf("sshtest: hostile server is read-only: %w", fs.ErrPermission)

// lookup finds p in its parent's listing by the last element of the listed
// name, as pkg/sftp's client reduces it (so "a/b" is found as b). A
// directory that the tree lists but its parent does not is a directory with
// mode 0755.
func (h handlers) lookup(p string) (Entry, error) {
	h.s.mu.Lock()
	tree := h.s.tree
	h.s.mu.Unlock()
	if p != "/" {
		if entries, ok := tree(path.Dir(p)); ok {
			for _, e := range entries {
				if path.Base(e.Name) == path.Base(p) {
					return e, nil
				}
			}
		}
	}
	if _, ok := tree(p); ok || p == "/" {
		return Entry{Name: path.Base(p), Mode: fs.ModeDir | 0o755}, nil
	}
	return Entry{}, os.ErrNotExist
}

// lookupJoined is lookup for opening and reading links, where it also
// finds a name that the client's path.Join(dir, name) made into dir itself,
// such as "/": it answers for the entry, not for the directory.
func (h handlers) lookupJoined(p string) (Entry, error) {
	h.s.mu.Lock()
	tree := h.s.tree
	h.s.mu.Unlock()
	if entries, ok := tree(p); ok {
		for _, e := range entries {
			if path.Join(p, path.Base(e.Name)) == p {
				return e, nil
			}
		}
	}
	return h.lookup(p)
}

func (h handlers) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	e, err := h.lookupJoined(r.Filepath)
	if err != nil {
		return nil, err
	}
	if !e.Mode.IsRegular() {
		return nil, fmt.Errorf("sshtest: %s is not a regular file: %w", r.Filepath, fs.ErrInvalid)
	}
	return bytes.NewReader(e.Data), nil
}

func (h handlers) Filewrite(*sftp.Request) (io.WriterAt, error) { return nil, errReadOnly }

func (h handlers) Filecmd(*sftp.Request) error { return errReadOnly }

func (h handlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		h.s.mu.Lock()
		tree := h.s.tree
		h.s.lists++
		h.s.mu.Unlock()
		entries, ok := tree(r.Filepath)
		if !ok {
			return nil, os.ErrNotExist
		}
		infos := make(lister, len(entries))
		for i, e := range entries {
			infos[i] = info{e}
		}
		return infos, nil
	case "Stat":
		// Stat does not follow links: the tree has no targets to follow.
		return h.Lstat(r)
	}
	return nil, fmt.Errorf("sshtest: %s: %w", r.Method, fs.ErrInvalid)
}

func (h handlers) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	e, err := h.lookup(r.Filepath)
	if err != nil {
		return nil, err
	}
	return lister{info{e}}, nil
}

func (h handlers) Readlink(p string) (string, error) {
	e, err := h.lookupJoined(p)
	if err != nil {
		return "", err
	}
	if e.Mode&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("sshtest: %s is not a symbolic link: %w", p, fs.ErrInvalid)
	}
	return e.Target, nil
}

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// info is an Entry as an os.FileInfo, with the name exactly as listed.
type info struct{ e Entry }

func (i info) Name() string       { return i.e.Name }
func (i info) Size() int64        { return int64(len(i.e.Data)) }
func (i info) Mode() fs.FileMode  { return i.e.Mode }
func (i info) ModTime() time.Time { return time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) }
func (i info) IsDir() bool        { return i.e.Mode.IsDir() }
func (i info) Sys() any           { return nil }
