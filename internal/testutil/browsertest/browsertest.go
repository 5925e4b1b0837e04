// Package browsertest runs a real headless Chromium for tests of the web
// monitor, driven by chromedp.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// RequireEnv, set to 1, makes a missing Chromium fail the test instead of
// skipping it (test.sh sets it where it installs Chromium).
const RequireEnv = "DROVE_REQUIRE_CHROMIUM"

// Path returns Chromium's path. A test without it is skipped, or fails
// with RequireEnv=1.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("no chromium in $PATH, and %s=1", RequireEnv)
	}
	t.Skip("no chromium in $PATH (apt-get install chromium)")
	return ""
}

// New starts a headless Chromium with a user data directory of the
// test's own and returns a browser tab's context, which ends with the
// test or after timeout. Chromium runs without its sandbox, which needs
// user namespaces or a setuid helper that CI containers (root) lack.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path := Path(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 1000),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// Start the browser now, without the deadline (which would stop the
	// browser itself), so a failure to start is reported as such.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, tcancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(tcancel)
	return ctx
}

// DumpOnFailure logs the page's text and saves a screenshot into the
// test's temporary directory if the test has failed: defer it after New.
func DumpOnFailure(t testing.TB, ctx context.Context) {
	t.Helper()
	if !t.Failed() {
		return
	}
	// The test's context may have ended: a short one of the browser's own.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if text, err := chromedp.Run(dctx, chromedp.Evaluate[string](`document.body.innerText`)); err == nil {
		t.Logf("page text at failure:\n%s", text)
	}
	if shot, err := chromedp.Run(dctx, chromedp.FullScreenshot(100)); err == nil {
		path := filepath.Join(t.TempDir(), "failure.png")
		if os.WriteFile(path, shot, 0o644) == nil {
			t.Logf("screenshot at failure: %s", path)
		}
	}
}
