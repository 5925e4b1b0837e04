// Package registry holds the functions and setup hooks a drove binary can run
// as a worker, by name.
//
// Registration happens at package initialisation, in the client and in every
// worker started from the same executable, so both sides hold the same set.
// The registry is process-wide by necessity, like encoding/gob's type
// registry: it is written during init and only read afterwards. Its
// [Fingerprint] lets a client refuse a worker built from other code.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
)

// Call runs a function on encoded input and returns encoded output. An error
// is the job's error.
type Call func(ctx context.Context, in []byte) ([]byte, error)

// Hook is a setup hook: it runs once per worker before its first job and
// returns the value jobs see plus a cleanup to run when the worker stops.
type Hook func(ctx context.Context) (state any, cleanup func(context.Context) error, err error)

// Func is a registered function.
type Func struct {
	Name    string
	In, Out string // type names, part of the fingerprint
	Call    Call
	// Late is true when the function was registered after [Seal]: a worker
	// started from this executable would not know it.
	Late bool
}

var (
	mu     sync.RWMutex
	funcs  = map[string]*Func{}
	hooks  = map[string]Hook{}
	sealed bool
	print  string
)

// Register adds a function. It panics if the name is taken, as two functions
// behind one name would make workers run the wrong code.
func Register(f *Func) {
	mu.Lock()
	defer mu.Unlock()
	if f.Name == "" {
		panic("drove: function name must not be empty")
	}
	if _, dup := funcs[f.Name]; dup {
		panic(fmt.Sprintf("drove: function %q registered twice", f.Name))
	}
	f.Late = sealed
	funcs[f.Name] = f
}

// RegisterHook adds a setup hook under name; it panics if the name is taken.
func RegisterHook(name string, h Hook) {
	mu.Lock()
	defer mu.Unlock()
	if name == "" {
		panic("drove: setup name must not be empty")
	}
	if _, dup := hooks[name]; dup {
		panic(fmt.Sprintf("drove: setup %q registered twice", name))
	}
	hooks[name] = h
}

// Lookup returns the function registered as name.
func Lookup(name string) (*Func, bool) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := funcs[name]
	return f, ok
}

// LookupHook returns the setup hook registered as name.
func LookupHook(name string) (Hook, bool) {
	mu.RLock()
	defer mu.RUnlock()
	h, ok := hooks[name]
	return h, ok
}

// Seal marks the end of package initialisation (drove.Main calls it) and
// fixes the fingerprint. Later registrations are marked Late.
func Seal() {
	mu.Lock()
	defer mu.Unlock()
	if !sealed {
		sealed = true
		print = fingerprintLocked()
	}
}

// Sealed reports whether Seal has run, that is whether drove.Main was called.
func Sealed() bool {
	mu.RLock()
	defer mu.RUnlock()
	return sealed
}

// Fingerprint identifies the registry's contents: the names and signatures
// of every function and hook registered before Seal (or now, if not sealed).
func Fingerprint() string {
	mu.RLock()
	defer mu.RUnlock()
	if sealed {
		return print
	}
	return fingerprintLocked()
}

func fingerprintLocked() string {
	var lines []string
	for _, f := range funcs {
		lines = append(lines, "func\x00"+f.Name+"\x00"+f.In+"\x00"+f.Out)
	}
	for name := range hooks {
		lines = append(lines, "hook\x00"+name)
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
