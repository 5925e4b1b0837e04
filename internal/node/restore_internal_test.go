package node

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeMeta: metadata files are read from disk at start; no input
// crashes the decoder, and what it accepts names a valid client and
// computation and encodes back to itself.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"client_id":"cl-1","id":"0123456789abcdef01234567","heartbeat_ms":50}`))
	f.Add([]byte(`{"client_id":"..","id":"x","heartbeat_ms":50}`))
	f.Add([]byte(`{"client_id":"a","id":"b","heartbeat_ms":-1}`))
	f.Add([]byte(`{"client_id":"a","id":"b","heartbeat_ms":1} {}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if !validClientID(m.ClientID) || !validClientID(m.ID) || m.HeartbeatMs <= 0 {
			t.Fatalf("accepted %+v", m)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if m2, err := decodeMeta(again); err != nil || m2 != m {
			t.Fatalf("%+v encodes to %s, which decodes to %+v, %v", m, again, m2, err)
		}
	})
}
