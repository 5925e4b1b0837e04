package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/progress"
	"github.com/drove-dev/drove/remote"
)

// fsFlags are the flags of `drove fs` itself, given before HOST.
type fsFlags struct {
	json bool
	ssh  sshFlags
}

// newFSCmd returns `drove fs HOST COMMAND [ARGS]`: file system commands and
// commands run on one SSH host, through package remote.
func newFSCmd() *cobra.Command {
	var f fsFlags
	cmd := &cobra.Command{
		Use:   "fs [flags] HOST COMMAND [ARGS...]",
		Short: "Work with files and commands on an SSH host",
		Long: `drove fs works on one SSH host through SFTP and SSH sessions; nothing but sshd
is needed on the host. HOST is [user@]host[:port] or an ssh_config alias.
Relative remote paths are relative to the login directory.

Commands:
  ls [-l] [PATH...]          list directories (or describe files)
  stat PATH...               show file information (symbolic links not followed)
  mkdir [-p] [-m MODE] DIR...
  rm [-r] [-f] PATH...       remove files (and, with -r, directories)
  mv OLD NEW                 rename, replacing NEW
  chmod MODE PATH...         MODE in octal
  ln -s TARGET LINK          create a symbolic link
  mkfifo [-m MODE] PATH...
  cat PATH...                write files to standard output
  put [-q] LOCAL... REMOTE   upload files or directories (recursive)
  get [-q] REMOTE... LOCAL   download files or directories (recursive)
  run [--timeout D] [-i] COMMAND...
                             run a shell command; exit with its status

put and get keep modes and modification times, write each file under a
temporary name and rename it when complete, and draw a progress bar when
standard error is a terminal. With several sources, or when the destination
is an existing directory, sources are copied into it.

--json (before or after HOST or COMMAND) prints one JSON value: file
information for ls and stat, {"ok":true,"command":…,"paths":[…]} for mkdir,
rm, mv, chmod, ln and mkfifo, the files moved for put and get, the result for
run, and {"ok":false,"error":…} on failure. cat always writes the raw bytes.`,
		Example: `  drove fs build-box ls -l /var/log
  drove fs alice@10.0.0.7:2222 put -q ./dataset /scratch/dataset
  drove fs --json worker1 stat /etc/hosts
  drove fs worker1 run --timeout 1m 'make -j8 test'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFS(cmd, &f, args[0], args[1:])
		},
	}
	// Flags after HOST belong to the remote command (ls -l, rm -r, …).
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.BoolVar(&f.json, "json", false, "print results as JSON")
	f.ssh.register(cmd)
	f.ssh.registerDeprecatedIdentityShorthand(cmd)
	return cmd
}

// fsEnv is what every fs subcommand needs.
type fsEnv struct {
	h      *remote.Host
	json   bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func runFS(cmd *cobra.Command, f *fsFlags, host string, args []string) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	sshCfg := f.ssh.sshConfig()
	for len(args) > 0 && args[0] == "--json" {
		f.json, args = true, args[1:]
	}
	if len(args) == 0 {
		return errors.New("fs: missing COMMAND after HOST")
	}
	sub := newFSSubcommands()
	name := args[0]
	sc, ok := sub[name]
	if !ok {
		return fmt.Errorf("fs: unknown command %q (want one of ls, stat, mkdir, rm, mv, chmod, ln, mkfifo, cat, put, get, run)", name)
	}
	// --json is also accepted after HOST, before or after COMMAND.
	sc.cmd.Flags().BoolVar(&f.json, "json", f.json, "print results as JSON")
	sc.cmd.SetArgs(args[1:])
	sc.cmd.SetIn(cmd.InOrStdin())
	sc.cmd.SetOut(cmd.OutOrStdout())
	sc.cmd.SetErr(cmd.ErrOrStderr())
	sc.cmd.SilenceErrors, sc.cmd.SilenceUsage = true, true
	var env fsEnv
	sc.cmd.RunE = func(c *cobra.Command, a []string) error {
		h, err := remote.Dial(ctx, host, remote.WithConfig(sshCfg))
		if err != nil {
			return err
		}
		defer h.Close()
		env = fsEnv{h: h, json: f.json, stdin: cmd.InOrStdin(), stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()}
		return sc.run(ctx, &env, a)
	}
	err := sc.cmd.ExecuteContext(ctx)
	var xe *exitError
	if err == nil || errors.As(err, &xe) {
		return err
	}
	if f.json {
		json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"ok": false, "error": err.Error()})
	}
	return fmt.Errorf("fs %s: %w", name, err)
}

type fsSub struct {
	cmd *cobra.Command
	run func(ctx context.Context, e *fsEnv, args []string) error
}

// fileJSON is the --json form of a file's information. JSON strings are
// UTF-8, so a name that is not gets its exact bytes in NameBytes and
// PathBytes as well (base64, as encoding/json writes []byte).
type fileJSON struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	NameBytes []byte    `json:"name_bytes,omitempty"`
	PathBytes []byte    `json:"path_bytes,omitempty"`
	Type      string    `json:"type"`
	Mode      string    `json:"mode"`
	Perm      string    `json:"perm"`
	Size      int64     `json:"size"`
	ModTime   time.Time `json:"mtime"`
	Target    string    `json:"target,omitempty"`
	// TargetBytes is Target's exact bytes when it is not UTF-8.
	TargetBytes []byte `json:"target_bytes,omitempty"`
}

// done reports success of a command that has no other output: with
// --json, {"ok":true,"command":…,"paths":[…]} with the absolute remote
// paths it changed, so that scripts can rely on one JSON value per run.
func (e *fsEnv) done(command string, paths []string, extra map[string]any) error {
	if !e.json {
		return nil
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		abs[i] = e.h.Abs(p)
	}
	out := map[string]any{"ok": true, "command": command, "paths": abs}
	for k, v := range extra {
		out[k] = v
	}
	return json.NewEncoder(e.stdout).Encode(out)
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsRegular():
		return "file"
	}
	return "other"
}

func toJSON(p string, fi fs.FileInfo, target string) fileJSON {
	j := fileJSON{Name: fi.Name(), Path: p, Type: fileType(fi.Mode()), Mode: fi.Mode().String(),
		Perm: fmt.Sprintf("%04o", fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime().UTC(), Target: target}
	if !utf8.ValidString(p) {
		j.NameBytes, j.PathBytes = []byte(fi.Name()), []byte(p)
	}
	if !utf8.ValidString(target) {
		j.TargetBytes = []byte(target)
	}
	return j
}

func longLine(fi fs.FileInfo, name, target string) string {
	s := fmt.Sprintf("%s %10d %s %s", fi.Mode(), fi.Size(), fi.ModTime().Format("2006-01-02 15:04"), name)
	if target != "" {
		s += " -> " + target
	}
	return s
}

// display makes a name printable on a terminal: names with control bytes
// or invalid UTF-8 are shown quoted, as ls -b/GNU ls do.
func display(name string) string {
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return strconv.Quote(name)
		}
	}
	return name
}

func parseMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("bad mode %q (want octal, e.g. 0644)", s)
	}
	fm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm, nil
}

func newFSSubcommands() map[string]*fsSub {
	subs := map[string]*fsSub{}
	add := func(use string, args cobra.PositionalArgs, run func(context.Context, *fsEnv, []string) error, flags func(*cobra.Command)) {
		c := &cobra.Command{Use: use, Args: args}
		if flags != nil {
			flags(c)
		}
		subs[strings.Fields(use)[0]] = &fsSub{cmd: c, run: run}
	}

	var long bool
	add("ls [-l] [PATH...]", cobra.ArbitraryArgs, func(ctx context.Context, e *fsEnv, args []string) error {
		if len(args) == 0 {
			args = []string{"."}
		}
		var all []fileJSON
		for _, p := range args {
			fi, err := e.h.Stat(ctx, p)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				lfi, _ := e.h.Lstat(ctx, p)
				if lfi != nil {
					fi = lfi
				}
				target := ""
				if fi.Mode()&fs.ModeSymlink != 0 {
					target, _ = e.h.Readlink(ctx, p)
				}
				all = append(all, toJSON(p, fi, target))
				if !e.json {
					if long {
						fmt.Fprintln(e.stdout, longLine(fi, display(p), display(target)))
					} else {
						fmt.Fprintln(e.stdout, display(p))
					}
				}
				continue
			}
			entries, err := e.h.ReadDir(ctx, p)
			if err != nil {
				return err
			}
			if !e.json && len(args) > 1 {
				fmt.Fprintf(e.stdout, "%s:\n", display(p))
			}
			for _, d := range entries {
				full := path.Join(p, d.Name())
				fi, err := d.Info()
				if err != nil {
					return err
				}
				target := ""
				if fi.Mode()&fs.ModeSymlink != 0 {
					target, _ = e.h.Readlink(ctx, full)
				}
				all = append(all, toJSON(full, fi, target))
				if e.json {
					continue
				}
				if long {
					fmt.Fprintln(e.stdout, longLine(fi, display(d.Name()), display(target)))
				} else {
					fmt.Fprintln(e.stdout, display(d.Name()))
				}
			}
		}
		if e.json {
			if all == nil {
				all = []fileJSON{}
			}
			return json.NewEncoder(e.stdout).Encode(all)
		}
		return nil
	}, func(c *cobra.Command) { c.Flags().BoolVarP(&long, "long", "l", false, "long listing") })

	add("stat PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		var all []fileJSON
		for _, p := range args {
			fi, err := e.h.Lstat(ctx, p)
			if err != nil {
				return err
			}
			target := ""
			if fi.Mode()&fs.ModeSymlink != 0 {
				target, _ = e.h.Readlink(ctx, p)
			}
			j := toJSON(e.h.Abs(p), fi, target)
			all = append(all, j)
			if !e.json {
				fmt.Fprintf(e.stdout, "  File: %s\n  Type: %s\n  Size: %d\n  Mode: %s (%s)\nModify: %s\n",
					display(j.Path), j.Type, j.Size, j.Mode, j.Perm, fi.ModTime().Format(time.RFC3339))
				if target != "" {
					fmt.Fprintf(e.stdout, "Target: %s\n", display(target))
				}
			}
		}
		if e.json {
			return json.NewEncoder(e.stdout).Encode(all)
		}
		return nil
	}, nil)

	var parents bool
	var mkdirMode string
	add("mkdir [-p] [-m MODE] DIR...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		mode, err := parseMode(mkdirMode)
		if err != nil {
			return err
		}
		for _, p := range args {
			if parents {
				err = e.h.MkdirAll(ctx, p, mode)
			} else {
				err = e.h.Mkdir(ctx, p, mode)
			}
			if err != nil {
				return err
			}
		}
		return e.done("mkdir", args, nil)
	}, func(c *cobra.Command) {
		c.Flags().BoolVarP(&parents, "parents", "p", false, "make parent directories as needed; no error if existing")
		c.Flags().StringVarP(&mkdirMode, "mode", "m", "0755", "mode (octal)")
	})

	var recursive, force bool
	add("rm [-r] [-f] PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		for _, p := range args {
			var err error
			if recursive {
				err = e.h.RemoveAll(ctx, p)
			} else {
				err = e.h.Remove(ctx, p)
			}
			if err != nil && !(force && errors.Is(err, fs.ErrNotExist)) {
				return err
			}
		}
		return e.done("rm", args, nil)
	}, func(c *cobra.Command) {
		c.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and their contents")
		c.Flags().BoolVarP(&force, "force", "f", false, "ignore missing files")
	})

	add("mv OLD NEW", cobra.ExactArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		if err := e.h.Rename(ctx, args[0], args[1]); err != nil {
			return err
		}
		return e.done("mv", args, nil)
	}, nil)

	add("chmod MODE PATH...", cobra.MinimumNArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		mode, err := parseMode(args[0])
		if err != nil {
			return err
		}
		for _, p := range args[1:] {
			if err := e.h.Chmod(ctx, p, mode); err != nil {
				return err
			}
		}
		return e.done("chmod", args[1:], map[string]any{"perm": fmt.Sprintf("%04o", mode.Perm())})
	}, nil)

	var symbolic bool
	add("ln -s TARGET LINK", cobra.ExactArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		if !symbolic {
			return errors.New("only symbolic links are supported: use ln -s")
		}
		if err := e.h.Symlink(ctx, args[0], args[1]); err != nil {
			return err
		}
		return e.done("ln", args[1:], map[string]any{"target": args[0]})
	}, func(c *cobra.Command) { c.Flags().BoolVarP(&symbolic, "symbolic", "s", false, "make a symbolic link") })

	var fifoMode string
	add("mkfifo [-m MODE] PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		mode, err := parseMode(fifoMode)
		if err != nil {
			return err
		}
		for _, p := range args {
			if err := e.h.Mkfifo(ctx, p, mode); err != nil {
				return err
			}
		}
		return e.done("mkfifo", args, nil)
	}, func(c *cobra.Command) { c.Flags().StringVarP(&fifoMode, "mode", "m", "0644", "mode (octal)") })

	add("cat PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		for _, p := range args {
			f, err := e.h.Open(ctx, p)
			if err != nil {
				return err
			}
			_, err = f.WriteTo(e.stdout)
			f.Close()
			if err != nil {
				return fmt.Errorf("remote: read %s: %w", p, err)
			}
		}
		return nil
	}, nil)

	var quiet bool
	transfer := func(c *cobra.Command) {
		c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	}
	add("put [-q] LOCAL... REMOTE", cobra.MinimumNArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		srcs, dst := args[:len(args)-1], args[len(args)-1]
		into, _ := e.h.IsDir(ctx, dst)
		if len(srcs) > 1 && !into {
			return fmt.Errorf("remote: %s is not a directory", dst)
		}
		var total int64
		for _, s := range srcs {
			n, err := localSize(s)
			if err != nil {
				return err
			}
			total += n
		}
		bar, done := newByteBar(e.stderr, total, "put", quiet || e.json)
		var results []map[string]any
		for _, s := range srcs {
			target := dst
			if into {
				target = path.Join(dst, filepath.Base(filepath.Clean(s)))
			}
			if err := e.h.Upload(ctx, s, target, remote.WithProgress(bar)); err != nil {
				done()
				return err
			}
			results = append(results, map[string]any{"local": s, "remote": e.h.Abs(target)})
		}
		done()
		if e.json {
			return json.NewEncoder(e.stdout).Encode(map[string]any{"bytes": total, "files": results})
		}
		return nil
	}, transfer)

	add("get [-q] REMOTE... LOCAL", cobra.MinimumNArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		srcs, dst := args[:len(args)-1], args[len(args)-1]
		st, err := os.Stat(dst)
		into := err == nil && st.IsDir()
		if len(srcs) > 1 && !into {
			return fmt.Errorf("%s is not a directory", dst)
		}
		var total int64
		for _, s := range srcs {
			n, err := remoteSize(ctx, e.h, s)
			if err != nil {
				return err
			}
			total += n
		}
		bar, done := newByteBar(e.stderr, total, "get", quiet || e.json)
		var results []map[string]any
		for _, s := range srcs {
			target := dst
			if into {
				target = filepath.Join(dst, path.Base(path.Clean(s)))
			}
			if err := e.h.Download(ctx, s, target, remote.WithProgress(bar)); err != nil {
				done()
				return err
			}
			results = append(results, map[string]any{"remote": e.h.Abs(s), "local": target})
		}
		done()
		if e.json {
			return json.NewEncoder(e.stdout).Encode(map[string]any{"bytes": total, "files": results})
		}
		return nil
	}, transfer)

	var runTimeout time.Duration
	var withStdin bool
	add("run [--timeout D] [-i] COMMAND...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		// As with ssh, the words are joined with spaces into one shell
		// command line.
		c := &remote.Cmd{Command: strings.Join(args, " "), Timeout: runTimeout}
		if withStdin {
			c.Stdin = e.stdin
		}
		if !e.json {
			c.Stdout, c.Stderr = e.stdout, e.stderr
		}
		res, err := e.h.Run(ctx, c)
		var xe *remote.ExitError
		if err != nil && !errors.As(err, &xe) {
			return err
		}
		if e.json {
			json.NewEncoder(e.stdout).Encode(map[string]any{
				"exit_code": res.ExitCode, "signal": res.SignalName(),
				"stdout": string(res.Stdout), "stderr": string(res.Stderr),
				"duration_sec": res.Duration.Seconds(),
			})
		}
		if res.ExitCode != 0 {
			code := res.ExitCode
			if code < 0 || code > 255 {
				code = 255
			}
			return &exitError{code: code}
		}
		return nil
	}, func(c *cobra.Command) {
		c.Flags().SetInterspersed(false)
		c.Flags().DurationVar(&runTimeout, "timeout", 0, "kill the remote process group after this long")
		c.Flags().BoolVarP(&withStdin, "stdin", "i", false, "send standard input to the command")
	})
	return subs
}

// newByteBar returns a progress callback drawing a bar on w (only if w is a
// terminal and !off) and a function to finish it.
func newByteBar(w io.Writer, total int64, label string, off bool) (func(int64), func()) {
	if off {
		return func(int64) {}, func() {}
	}
	bar := progress.New(w, int(total), label+" bytes")
	return func(n int64) { bar.Add(int(n)) }, bar.Finish
}

func localSize(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// remoteSize adds up the sizes of the regular files at or below p. It walks
// with the Host's own methods, not h.FS(): io/fs paths must be valid UTF-8,
// remote names need not be.
func remoteSize(ctx context.Context, h *remote.Host, p string) (int64, error) {
	fi, err := h.Stat(ctx, p)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return fi.Size(), nil
	}
	var n int64
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		// The same bound as Download's: a server listing a directory
		// inside itself must not keep us here for ever.
		if depth > filesink.MaxDepth {
			return fmt.Errorf("remote: %s: %w", dir, remote.ErrTooDeep)
		}
		entries, err := h.ReadDir(ctx, dir)
		if err != nil {
			return err
		}
		for _, d := range entries {
			switch {
			case d.IsDir():
				if err := walk(path.Join(dir, d.Name()), depth+1); err != nil {
					return err
				}
			case d.Type().IsRegular():
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
		}
		return nil
	}
	return n, walk(h.Abs(p), 0)
}
