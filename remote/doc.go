// Package remote gives a Go program a remote machine as a value: its file
// system and its processes, over nothing but SSH and the SFTP subsystem that
// every OpenSSH server has.
//
//	h, err := remote.Dial(ctx, "user@host")
//	if err != nil { … }
//	defer h.Close()
//	dir, err := h.TempDir(ctx, "", "job-*")
//	err = h.Upload(ctx, "input/", dir+"/input")
//	res, err := h.Run(ctx, &remote.Cmd{Command: "./analyse input > out", Dir: dir})
//	err = h.Download(ctx, dir+"/out", "out")
//
// It is the Go counterpart of exec_proxy: every method of exec_proxy's proxy
// (newdir, mkdir, chdir, …, upload, download, run) has a [Host] method, and
// exec_proxy's sticky error model is available as [Sticky].
//
// # Configuration
//
// How hosts are reached (ssh_config, known_hosts, keys, agent, timeouts,
// session multiplexing) is one [Config], given whole with [WithConfig] or
// field by field with the other With… options. It is drove's one SSH
// configuration type: drove.WithSSH takes the same type, and drove's
// run, exec and fs commands fill it from the same flags. Package remote is
// the public face of drove's SSH layer, whose connection errors
// ([*ConnError], [*HostKeyError]) say "remote:" wherever they surface.
//
// # Paths
//
// Remote paths are slash-separated. A relative path is resolved against the
// Host's own working directory, which starts as the login directory and is
// changed by [Host.Chdir]; it is not shared with other Hosts nor with
// commands other than those run by [Host.Run]. Names are passed to the server
// byte for byte (spaces, newlines, quotes, "$(…)", a leading "-" and bytes
// that are not UTF-8 are all fine); only NUL is refused. Nothing is ever
// passed through a shell unquoted.
//
// # Errors
//
// File system methods return *fs.PathError whose Op starts with "remote: "
// and whose Err matches the io/fs sentinels: errors.Is(err, fs.ErrNotExist),
// fs.ErrExist, fs.ErrPermission. A host that cannot be reached, and a
// connection or SFTP session lost during a call (also in the middle of a
// file operation or a transfer), yield an error matching *ConnError with
// errors.As (for file methods, inside the *fs.PathError); an answer of the
// server never does. An unknown or changed host key gives a *HostKeyError.
// [Host.Run] returns *ExitError for a command that exits non-zero.
//
// # Cancellation
//
// Every method takes a context. [Host.Run] kills the remote process group
// when it ends, and the group also ends by itself on the host if the
// connection goes away under it (this process was killed, say). A file method returns as soon as its ctx ends, with ctx's
// error inside the *fs.PathError, even when the server does not answer (a
// stopped sftp-server, a hung file system). SFTP cannot abort a request,
// though: one already sent is abandoned, not undone, and may still take
// effect on the server (a Mkdir or a Rename). ReadFile, WriteFile, Upload
// and Download stop at their next request; Upload and Download first wait
// up to 2 seconds for that, so that their temporary files are removed
// before they return. The methods of an open [File] and of the [Host.FS]
// view cannot be cancelled.
//
// # Concurrency
//
// A Host is safe for use by many goroutines. They share one SSH connection:
// file operations are multiplexed over one SFTP channel (the one SFTP
// session the connection pool keeps for the host), and each Run uses a
// session of its own (more connections are opened when the server's
// MaxSessions is reached). A connection or SFTP server that dies is replaced
// on the next call.
package remote
