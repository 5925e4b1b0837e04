// Package remotebench measures package remote against a loopback sshd and
// compares it with OpenSSH's scp and sftp. Run it with bench/remote.sh.
package remotebench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
	"github.com/drove-dev/drove/remote"
)

const bigSize = 100 << 20

func setup(tb testing.TB) (*sshtest.Server, *remote.Host, string) {
	tb.Helper()
	s := sshtest.Start(tb)
	h, err := remote.Dial(context.Background(), "host0", remote.WithSSHConfig(s.SSHConfig), remote.WithoutAgent())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	dir, err := h.TempDir(context.Background(), "", "drove-bench-*")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.RemoveAll(context.Background(), dir) })
	return s, h, dir
}

func bigFile(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "big")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, bigSize); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return p
}

// BenchmarkExists1000 times 1,000 sequential Exists calls over one
// connection (one op = 1,000 calls).
func BenchmarkExists1000(b *testing.B) {
	_, h, dir := setup(b)
	ctx := context.Background()
	for b.Loop() {
		for i := range 1000 {
			if _, err := h.Exists(ctx, fmt.Sprintf("%s/f%d", dir, i)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkExists1000Cancellable is BenchmarkExists1000 with a ctx that
// can be cancelled, so that each call runs in a goroutine of its own and
// returns as soon as ctx ends.
func BenchmarkExists1000Cancellable(b *testing.B) {
	_, h, dir := setup(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for b.Loop() {
		for i := range 1000 {
			if _, err := h.Exists(ctx, fmt.Sprintf("%s/f%d", dir, i)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkUpload100MiB(b *testing.B) {
	_, h, dir := setup(b)
	src := bigFile(b)
	b.SetBytes(bigSize)
	for b.Loop() {
		if err := h.Upload(context.Background(), src, dir+"/big"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDownload100MiB(b *testing.B) {
	_, h, dir := setup(b)
	if err := h.Upload(context.Background(), bigFile(b), dir+"/big"); err != nil {
		b.Fatal(err)
	}
	dst := filepath.Join(b.TempDir(), "big")
	b.SetBytes(bigSize)
	for b.Loop() {
		if err := h.Download(context.Background(), dir+"/big", dst); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCompareOpenSSH prints a table of drove vs scp vs sftp on the same
// loopback sshd. It runs only with DROVE_BENCH=1 (bench/remote.sh sets it).
func TestCompareOpenSSH(t *testing.T) {
	if os.Getenv("DROVE_BENCH") != "1" {
		t.Skip("set DROVE_BENCH=1 (bench/remote.sh)")
	}
	for _, tool := range []string{"scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	s, h, dir := setup(t)
	ctx := context.Background()
	src := bigFile(t)
	dst := filepath.Join(t.TempDir(), "back")
	rounds := 5

	best := func(name string, f func() error) time.Duration {
		var ds []time.Duration
		for range rounds {
			start := time.Now()
			if err := f(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ds = append(ds, time.Since(start))
		}
		return slices.Min(ds)
	}
	sh := func(name string, args ...string) func() error {
		return func() error {
			out, err := exec.Command(name, args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}
	remoteBig := dir + "/big"
	alias := s.Aliases[0]
	F := s.SSHConfig

	type row struct {
		tool       string
		up, down   time.Duration
		upOK, dnOK bool
	}
	var rows []row
	rows = append(rows, row{"drove (remote.Upload/Download)",
		best("drove up", func() error { return h.Upload(ctx, src, remoteBig) }),
		best("drove down", func() error { return h.Download(ctx, remoteBig, dst) }), true, true})
	rows = append(rows, row{"scp (OpenSSH default: SFTP protocol)",
		best("scp up", sh("scp", "-q", "-F", F, src, alias+":"+remoteBig)),
		best("scp down", sh("scp", "-q", "-F", F, alias+":"+remoteBig, dst)), true, true})
	rows = append(rows, row{"scp -O (legacy SCP protocol)",
		best("scp -O up", sh("scp", "-O", "-q", "-F", F, src, alias+":"+remoteBig)),
		best("scp -O down", sh("scp", "-O", "-q", "-F", F, alias+":"+remoteBig, dst)), true, true})
	// Go's x/crypto/ssh negotiates aes128-gcm, OpenSSH prefers
	// chacha20-poly1305: show scp with the same cipher too.
	gcm := "aes128-gcm@openssh.com"
	rows = append(rows, row{"scp -c " + gcm,
		best("scp gcm up", sh("scp", "-q", "-c", gcm, "-F", F, src, alias+":"+remoteBig)),
		best("scp gcm down", sh("scp", "-q", "-c", gcm, "-F", F, alias+":"+remoteBig, dst)), true, true})
	batch := func(cmd string) func() error {
		return func() error {
			c := exec.Command("sftp", "-q", "-F", F, "-b", "-", alias)
			c.Stdin = strings.NewReader(cmd + "\n")
			out, err := c.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}
	rows = append(rows, row{"sftp (put/get)",
		best("sftp put", batch("put "+src+" "+remoteBig)),
		best("sftp get", batch("get "+remoteBig+" "+dst)), true, true})

	mib := func(d time.Duration) float64 { return float64(bigSize) / (1 << 20) / d.Seconds() }
	var b strings.Builder
	fmt.Fprintf(&b, "\n100 MiB, best of %d, loopback sshd (%s)\n\n", rounds, sshdVersion())
	fmt.Fprintf(&b, "| tool | upload MiB/s | download MiB/s | upload vs scp | download vs scp |\n|---|---:|---:|---:|---:|\n")
	scp := rows[1]
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f× | %.2f× |\n", r.tool, mib(r.up), mib(r.down),
			scp.up.Seconds()/r.up.Seconds(), scp.down.Seconds()/r.down.Seconds())
	}

	// 1,000 Exists over one connection, vs 1,000 stat in one sftp batch.
	exists := best("exists", func() error {
		for i := range 1000 {
			if _, err := h.Exists(ctx, fmt.Sprintf("%s/f%d", dir, i)); err != nil {
				return err
			}
		}
		return nil
	})
	var cmds strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&cmds, "-ls -d %s/f%d\n", dir, i)
	}
	sftpStat := best("sftp ls", batch(cmds.String()))
	fmt.Fprintf(&b, "\n1,000 existence checks of missing files, best of %d\n\n| tool | total | per call |\n|---|---:|---:|\n", rounds)
	fmt.Fprintf(&b, "| drove remote.Exists (one connection) | %v | %v |\n", exists.Round(time.Millisecond), (exists / 1000).Round(time.Microsecond))
	fmt.Fprintf(&b, "| sftp -b (1,000 `-ls -d` in one session, incl. connect) | %v | %v |\n", sftpStat.Round(time.Millisecond), (sftpStat / 1000).Round(time.Microsecond))
	t.Log(b.String())
	if out := os.Getenv("DROVE_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}

func sshdVersion() string {
	out, _ := exec.Command("ssh", "-V").CombinedOutput()
	return strings.TrimSpace(string(out))
}
