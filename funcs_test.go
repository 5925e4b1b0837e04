package drove_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/drove-dev/drove"
)

// Functions the tests run; registered at init, as workers need.
var (
	square = drove.Func("test.square", func(ctx context.Context, n int) (int, error) {
		return n * n, nil
	})
	talk = drove.Func("test.talk", func(ctx context.Context, s string) (string, error) {
		fmt.Println("out:", s)
		fmt.Fprintln(os.Stderr, "err:", s)
		return s, nil
	})
	fail = drove.Func("test.fail", func(ctx context.Context, s string) (int, error) {
		return 0, errors.New("failed: " + s)
	})
	boom = drove.Func("test.panic", func(ctx context.Context, s string) (int, error) {
		panic("boom: " + s)
	})
	exit = drove.Func("test.exit", func(ctx context.Context, code int) (int, error) {
		fmt.Fprintln(os.Stderr, "exiting with", code)
		os.Exit(code)
		return 0, nil
	})
	// sleep sleeps d, or until cancelled; it returns how long it slept.
	sleep = drove.Func("test.sleep", func(ctx context.Context, d time.Duration) (time.Duration, error) {
		select {
		case <-time.After(d):
			return d, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// graceful returns its best result when cancelled, as dispy's longrun.
	graceful = drove.Func("test.graceful", func(ctx context.Context, n int) (int, error) {
		best := 0
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return best, nil
			case <-time.After(time.Millisecond):
				best = i
				if i%20 == 19 {
					_ = drove.Provisional(ctx, best)
				}
			}
		}
	})
	// stubborn ignores cancellation entirely.
	stubborn = drove.Func("test.stubborn", func(ctx context.Context, d time.Duration) (int, error) {
		_ = drove.Provisional(ctx, 0) // tells the test it runs
		time.Sleep(d)
		return 1, nil
	})
	// flaky fails unless the marker file exists, and creates it.
	flaky = drove.Func("test.flaky", func(ctx context.Context, marker string) (string, error) {
		if _, err := os.Stat(marker); err != nil {
			_ = os.WriteFile(marker, nil, 0o600)
			return "", errors.New("first attempt fails")
		}
		return "second attempt", nil
	})
	provisional = drove.Func("test.provisional", func(ctx context.Context, n int) (int, error) {
		for i := 1; i < n; i++ {
			if err := drove.Provisional(ctx, i); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	sendFile = drove.Func("test.sendfile", func(ctx context.Context, name string) (int, error) {
		data := []byte("payload of " + name)
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return 0, err
		}
		return len(data), drove.SendFile(ctx, name)
	})
	// sendFileIn is sendFile for a name in a subdirectory.
	sendFileIn = drove.Func("test.sendfilein", func(ctx context.Context, name string) (int, error) {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(name, []byte("payload"), 0o644); err != nil {
			return 0, err
		}
		return 0, drove.SendFile(ctx, name)
	})
	readDep = drove.Func("test.readdep", func(ctx context.Context, name string) (string, error) {
		b, err := os.ReadFile(name)
		return string(b), err
	})
	getenv = drove.Func("test.getenv", func(ctx context.Context, key string) (string, error) {
		return os.Getenv(key), nil
	})
	table = drove.NewSetup("test.table", func(ctx context.Context) (map[string]int, error) {
		return map[string]int{"a": 1, "b": 2, "pid": os.Getpid()}, nil
	}, nil)
	lookup = drove.Func("test.lookup", func(ctx context.Context, key string) (int, error) {
		v, ok := table.State(ctx)[key]
		if !ok {
			return 0, fmt.Errorf("no key %q", key)
		}
		return v, nil
	})
)

var (
	crash = drove.Func("test.crash", func(ctx context.Context, _ int) (int, error) {
		fmt.Fprintln(os.Stderr, "about to crash")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	unencodable = drove.Func("test.unencodable", func(ctx context.Context, f func()) (int, error) {
		return 0, nil
	})
	echoShipped = drove.Func("test.shipped", func(ctx context.Context, p Point) (Point, error) {
		fmt.Printf("point %s\n", p)
		return Point{X: p.Y, Y: p.X}, nil
	})
)

// Point is a user type shipped as a job's input and printed by the job, as
// dispy's obj_instances example.
type Point struct{ X, Y int }

func (p Point) String() string { return fmt.Sprintf("(%d, %d)", p.X, p.Y) }

// counted's cleanup leaves a file per worker in $DROVE_TEST_CLEANUP_DIR.
var (
	counted = drove.NewSetup("test.counted", func(ctx context.Context) (int, error) {
		return os.Getpid(), nil
	}, func(ctx context.Context, pid int) error {
		dir := os.Getenv("DROVE_TEST_CLEANUP_DIR")
		return os.WriteFile(filepath.Join(dir, fmt.Sprintf("cleanup-%d", pid)), nil, 0o600)
	})
	whichWorker = drove.Func("test.whichworker", func(ctx context.Context, _ int) (int, error) {
		return counted.State(ctx), nil
	})
)
