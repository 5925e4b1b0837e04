package nodeexec

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
)

// NewClientID makes a client id no other client has: prefix, this host's
// name (for people reading a node's directory) and a random suffix, kept
// to what a node accepts in an id.
func NewClientID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return prefix + clientIDFor(host, hex.EncodeToString(b[:]))
}

// clientIDFor makes the client id a node files a client under from the
// host name, made safe, and random.
func clientIDFor(host, random string) string {
	var b strings.Builder
	for _, c := range host {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			b.WriteRune(c)
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String() + "-" + random
}
