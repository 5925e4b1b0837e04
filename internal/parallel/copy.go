package parallel

import (
	"context"
	"errors"
	"path"
	"path/filepath"
	"strings"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
)

// copyParallel is how many files of a directory tree move at once on one
// host, over its one SFTP session.
const copyParallel = 4

// remotePath makes p absolute on the host: a relative path (or one
// starting with "~/") is relative to the login directory, where the SFTP
// session starts, as scp takes it.
func remotePath(s *sshconn.SFTP, p string) (string, error) {
	p = strings.TrimPrefix(p, "~/")
	if p == "~" {
		p = "."
	}
	if path.IsAbs(p) {
		return path.Clean(p), nil
	}
	wd, err := s.Getwd()
	if err != nil {
		return "", sftpengine.SessionPathErr(s, "getwd", ".", err)
	}
	return path.Join(wd, p), nil
}

// CopyTo returns a [BroadcastConfig.Files] that copies each local file or
// directory of srcs into the directory dest on every host, as clush --copy
// and pscp -r do: src lands at dest/NAME, NAME being its last element;
// dest is created if missing and a relative dest is relative to the login
// directory. Directories are copied recursively, modes and modification
// times kept, every file written under a temporary name and renamed
// (internal/sshconn/sftpengine).
func CopyTo(srcs []string, dest string) func(ctx context.Context, s *sshconn.SFTP, name string) error {
	return func(ctx context.Context, s *sshconn.SFTP, _ string) error {
		dir, err := remotePath(s, dest)
		if err != nil {
			return err
		}
		if err := s.MkdirAll(dir); err != nil {
			return sftpengine.SessionPathErr(s, "mkdir", dir, err)
		}
		for _, src := range srcs {
			dst := path.Join(dir, filepath.Base(filepath.Clean(src)))
			if err := sftpengine.Upload(ctx, s, src, dst, sftpengine.Options{Parallel: copyParallel}); err != nil {
				return err
			}
		}
		return nil
	}
}

// CopyFrom returns a [BroadcastConfig.Files] that gathers each remote file
// or directory of srcs from every host into the local directory dest, as
// clush --rcopy does: src of host HOST lands at dest/NAME.HOST, NAME being
// its last element and HOST the host's name (as pssh names it). Relative
// remote paths are relative to the login directory. Directories are
// copied recursively, modes and modification times kept, every file
// written under a temporary name and renamed, through an os.Root confined
// to dest/NAME.HOST (internal/sshconn/sftpengine).
func CopyFrom(srcs []string, dest string) func(ctx context.Context, s *sshconn.SFTP, name string) error {
	return func(ctx context.Context, s *sshconn.SFTP, name string) error {
		for _, src := range srcs {
			rp, err := remotePath(s, src)
			if err != nil {
				return err
			}
			base := path.Base(rp)
			if base == "/" || base == "." {
				return sftpengine.PathErr("rcopy", rp, errors.New("names no file or directory to copy"))
			}
			// A name is one element, even for a host written with a '/'.
			local := filepath.Join(dest, base+"."+strings.ReplaceAll(name, "/", "_"))
			if err := sftpengine.Download(ctx, s, rp, local, sftpengine.Options{Parallel: copyParallel}); err != nil {
				return err
			}
		}
		return nil
	}
}
