// Package sftpengine moves files over the SFTP session an [sshconn.Pool]
// keeps for a host. It is drove's one SFTP file engine: package remote's
// Host (and so drove fs) and the file transfers of drove run
// (--transfer, --return, --basefile) all go through it.
//
// Every file is written under a hidden temporary name in its destination
// directory and renamed into place once complete, so an interrupted
// transfer never leaves a partial file under the final name; modes and
// modification times are kept; cancelling the context stops a transfer at
// its next request, in the middle of a file, and removes its temporary
// file.
//
// What a server lists is not trusted: [ReadDir] refuses a listing with a
// name that is not a single path element or with a name twice, every local
// write goes through an os.Root tree writer ([filesink.Dir]), and walks
// stop at [filesink.MaxDepth] directories.
//
// Errors about files are *fs.PathError values whose Op starts with
// "remote: ", the SSH layer's public name; an error caused by the loss of
// the session or its connection wraps an [*sshconn.ConnError].
package sftpengine
