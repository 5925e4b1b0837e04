package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

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
		json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"ok": false, "command": name, "error": err.Error()})
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
	fields := map[string]any{"paths": abs}
	for k, v := range extra {
		fields[k] = v
	}
	return e.result(command, fields)
}

// result reports the success of a command whose --json output is one
// object: {"ok":true,"command":…} plus fields, the same envelope as done's
// and the error's.
func (e *fsEnv) result(command string, fields map[string]any) error {
	out := map[string]any{"ok": true, "command": command}
	for k, v := range fields {
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

// newFSSub makes the *fsSub for one subcommand; its constructor then adds
// the subcommand's own flags to cmd.
func newFSSub(use string, args cobra.PositionalArgs, run func(context.Context, *fsEnv, []string) error) *fsSub {
	return &fsSub{cmd: &cobra.Command{Use: use, Args: args}, run: run}
}

// newFSSubcommands returns the subcommands of drove fs by name, each made
// afresh with its own flag variables. One file per subcommand: fs_NAME.go.
func newFSSubcommands() map[string]*fsSub {
	subs := map[string]*fsSub{}
	for _, s := range []*fsSub{
		newFSLs(), newFSStat(), newFSMkdir(), newFSRm(), newFSMv(), newFSChmod(),
		newFSLn(), newFSMkfifo(), newFSCat(), newFSPut(), newFSGet(), newFSRun(),
	} {
		subs[strings.Fields(s.cmd.Use)[0]] = s
	}
	return subs
}
