package parallel

import (
	"fmt"
	"sort"
	"strings"
)

// Messages for GNU parallel options drove run does not have, by what
// drove offers instead.
const (
	msgPipe = "drove run gives each job arguments, not a block of standard input; split the input into files first " +
		"(split -l N in.txt part.) and give the files as inputs (drove run 'cmd < {}' ::: part.*)"
	msgSemaphore = "drove run is not a semaphore; use flock(1) to serialise commands, or a shared queue: drove scheduler and drove submit"
	msgSQL       = "for a queue shared by several clients, use drove scheduler and drove submit --scheduler HOST"
	msgTmux      = "use --line-buffer to see lines as jobs print them, or --results DIR to keep each job's output"
	msgFiles     = "use --results DIR: each job's output goes to DIR/<seq>/stdout and stderr"
	msgCompress  = "output is not compressed; use --results DIR and compress the files, or compress in the command"
	msgPacking   = "several arguments per job are given with -N N (or -n N), {1}…{N} being the arguments; " +
		"there is no packing up to a command-line length (-X, -m, -s)"
	msgRename = "replacement strings cannot be renamed or added; use {} {.} {/} {//} {/.} {#} {%} and {N} {N.} {N/} {N//} {N/.}, " +
		"or let the shell do it: \"$(echo {} | sed 's/a/b/')\""
	msgSSH = "drove has its own SSH client and always reuses connections; set ssh options in ssh_config (-F FILE), " +
		"ports with host:port"
	msgHostGroups = "host groups are not supported; list the hosts with -S (node sets: node[01-10]) or --slf FILE"
	msgFilter     = "drove reports hosts it cannot reach and leaves them out by itself"
	msgTTY        = "jobs run with no terminal and /dev/null as standard input"
	msgUngroup    = "use --line-buffer: whole lines are printed as jobs produce them"
	msgTagString  = "use --tag: each line is prefixed with the job's arguments and a tab"
	msgCSV        = "use --colsep , (quoted fields with commas in them are not understood)"
	msgHeader     = "use --colsep without a header line (tail -n +2 FILE), and {1} {2}… for the columns"
	msgDelimiter  = "inputs are lines ending with newline; convert other separators first (tr '\\0' '\\n' < list, for names without newlines)"
	msgEOF        = "inputs are read to the end; cut them first (sed '/^EOF$/q')"
	msgLimits     = "resource limits are not supported; set each host's slots with N/ in -S or with -j (N, N%, +N, -N)"
	msgNice       = "put nice in the command: drove run nice -n 10 CMD"
	msgDelay      = "jobs start as soon as a slot is free; put a sleep in the command to space them out"
	msgTermSeq    = "use --term-grace DUR: a job is stopped with SIGINT, SIGTERM, then SIGKILL to its process group, DUR apart"
	msgShebang    = "write a script that calls drove run"
	msgEnvRecord  = "name the variables to pass with --env NAME"
	msgProfile    = "profiles are not read; put the options in a shell alias or script"
	msgCPUs       = "drove asks each host for its CPU count with nproc; see it with drove exec -w HOSTS nproc"
	msgRetryFail  = "use --joblog FILE --resume-failed with the same inputs"
	msgShuf       = "shuffle the inputs first: drove run CMD :::: <(shuf list)"
	msgTemplate   = "write the file in the command: drove run 'sed s/X/{}/ template > {}.out' ::: …"
	msgTotal      = "drove counts the inputs itself for --bar and --eta"
	msgVersion    = "this is drove run, not GNU parallel: drove version"
	msgInteract   = "jobs cannot ask for confirmation; use --dry-run to see the commands first"
	msgQuote      = "drove quotes arguments itself; the command is given to the shell as written"
	msgSlotVar    = "jobs get $PARALLEL_JOBSLOT (and {%} in the command)"
	msgLatest     = "use --line-buffer, or --bar / --eta / --progress for progress"
	msgEmpty      = "an input line is one argument even when empty; filter the inputs first (grep .)"
	msgTrim       = "inputs are used as they are; trim them first (sed 's/^ *//; s/ *$//')"
	msgArgSep     = "the separators are ::: :::+ :::: ::::+ and cannot be changed"
	msgTimeoutPct = "--timeout takes a duration (seconds or 1m30s), not a share of the median runtime"
)

// unsupported maps GNU parallel options (long ones as "--name", short
// ones as "-x") that drove run lacks to what to use instead.
var unsupported = map[string]string{
	"--pipe": msgPipe, "--spreadstdin": msgPipe, "--pipe-part": msgPipe, "--pipepart": msgPipe,
	"--block": msgPipe, "--block-size": msgPipe, "--block-timeout": msgPipe, "--bt": msgPipe,
	"--recstart": msgPipe, "--recend": msgPipe, "--round-robin": msgPipe, "--round": msgPipe,
	"--cat": msgPipe, "--fifo": msgPipe, "--shard": msgPipe, "--bin": msgPipe, "--group-by": msgPipe,
	"--regexp": msgPipe, "--remove-rec-sep": msgPipe, "--removerecsep": msgPipe, "--rrs": msgPipe,
	"--tee": msgPipe, "--max-lines": msgPipe, "-L": msgPipe, "-l": msgPipe,

	"--semaphore": msgSemaphore, "--sem": msgSemaphore, "--semaphore-name": msgSemaphore, "--semaphorename": msgSemaphore,
	"--id": msgSemaphore, "--semaphore-timeout": msgSemaphore, "--semaphoretimeout": msgSemaphore, "--st": msgSemaphore,
	"--fg": msgSemaphore, "--bg": msgSemaphore, "--wait": msgSemaphore,

	"--sql": msgSQL, "--sqlmaster": msgSQL, "--sql-master": msgSQL, "--sqlworker": msgSQL, "--sql-worker": msgSQL,
	"--sqlandworker": msgSQL, "--sql-and-worker": msgSQL,

	"--tmux": msgTmux, "--tmuxpane": msgTmux,
	"--files": msgFiles, "--files0": msgFiles, "--output-as-files": msgFiles, "--outputasfiles": msgFiles,
	"--compress": msgCompress, "--compress-program": msgCompress, "--decompress-program": msgCompress,

	"-X": msgPacking, "-m": msgPacking, "--xargs": msgPacking, "-s": msgPacking, "--max-chars": msgPacking,
	"-x": msgPacking, "--exit": msgPacking, "--show-limits": msgPacking, "--max-line-length-allowed": msgPacking,

	"-I": msgRename, "--replace": msgRename, "-i": msgRename, "--extensionreplace": msgRename, "--er": msgRename,
	"--basenamereplace": msgRename, "--bnr": msgRename, "--dirnamereplace": msgRename, "--dnr": msgRename,
	"--basenameextensionreplace": msgRename, "--bner": msgRename, "--seqreplace": msgRename,
	"--slotreplace": msgRename, "--rpl": msgRename, "--plus": msgRename, "--parens": msgRename,

	"--ssh": msgSSH, "-M": msgSSH, "--controlmaster": msgSSH, "--ssh-delay": msgSSH, "--sshdelay": msgSSH,
	"--rsync-opts": msgSSH,
	"--hostgroups": msgHostGroups, "--hgrp": msgHostGroups,
	"--filter-hosts": msgFilter,

	"--tty": msgTTY, "-o": msgTTY, "--open-tty": msgTTY,
	"-p": msgInteract, "--interactive": msgInteract,
	"-u": msgUngroup, "--ungroup": msgUngroup,
	"--tagstring": msgTagString, "--ctag": msgTagString, "--ctagstring": msgTagString,
	"--color": msgTagString, "--color-failed": msgTagString, "--cf": msgTagString,
	"--latest-line": msgLatest, "--ll": msgLatest,
	"--csv":    msgCSV,
	"--header": msgHeader,

	"-0": msgDelimiter, "--null": msgDelimiter, "-d": msgDelimiter, "--delimiter": msgDelimiter,
	"-E": msgEOF, "-e": msgEOF, "--eof": msgEOF,
	"-r": msgEmpty, "--no-run-if-empty": msgEmpty,
	"--trim": msgTrim, "--skip-first-line": msgHeader,
	"--arg-sep": msgArgSep, "--arg-file-sep": msgArgSep,

	"--load": msgLimits, "--memfree": msgLimits, "--memsuspend": msgLimits, "--noswap": msgLimits, "--limit": msgLimits,
	"--nice":     msgNice,
	"--delay":    msgDelay,
	"--term-seq": msgTermSeq,
	"--shebang":  msgShebang, "--hashbang": msgShebang, "--shebang-wrap": msgShebang,
	"--record-env": msgEnvRecord, "--session": msgEnvRecord,
	"--profile": msgProfile, "-J": msgProfile,
	"--number-of-cpus": msgCPUs, "--number-of-cores": msgCPUs, "--number-of-sockets": msgCPUs,
	"--number-of-threads": msgCPUs, "--use-cpus-instead-of-cores": msgCPUs, "--use-cores-instead-of-threads": msgCPUs,
	"--use-sockets-instead-of-threads": msgCPUs,
	"--retry-failed":                   msgRetryFail,
	"--shuf":                           msgShuf,
	"--template":                       msgTemplate, "--tmpl": msgTemplate,
	"--total-jobs": msgTotal, "--total": msgTotal,
	"--version": msgVersion, "-V": msgVersion, "--minversion": msgVersion, "--citation": msgVersion,
	"--bibtex": msgVersion, "--gnu": msgVersion, "--embed": msgVersion, "--shell-completion": msgVersion,
	"-q": msgQuote, "--quote": msgQuote, "--shellquote": msgQuote, "--shell-quote": msgQuote,
	"--process-slot-var": msgSlotVar,
}

// UnsupportedFlag returns, for a GNU parallel option drove run does not
// have ("--pipe", "-X"; a value after "=" is ignored), the message saying
// so and what drove offers instead.
func UnsupportedFlag(flag string) (string, bool) {
	name, _, _ := strings.Cut(flag, "=")
	msg, ok := unsupported[name]
	if !ok {
		return "", false
	}
	return fmt.Sprintf("drove: run: GNU parallel's %s is not supported: %s", name, msg), true
}

// UnsupportedFlags lists the options [UnsupportedFlag] knows, sorted.
func UnsupportedFlags() []string {
	out := make([]string, 0, len(unsupported))
	for k := range unsupported {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TimeoutPercentError is the error for GNU parallel's --timeout N%.
func TimeoutPercentError(v string) error {
	return fmt.Errorf("drove: run: --timeout %s: %s", v, msgTimeoutPct)
}
