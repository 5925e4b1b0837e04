package node

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/drove-dev/drove/internal/blob"
)

func validSum(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func (n *Node) blobSum(w http.ResponseWriter, r *http.Request) (string, bool) {
	sum := r.PathValue("sum")
	if !validSum(sum) {
		http.Error(w, "drove: a blob is named by the hex SHA-256 of its contents", http.StatusBadRequest)
		return "", false
	}
	return sum, true
}

// blobHead answers whether the node has a blob, so a client sends only
// what is missing.
func (n *Node) blobHead(w http.ResponseWriter, r *http.Request) {
	sum, ok := n.blobSum(w, r)
	if !ok {
		return
	}
	if !n.blobs.Has(sum) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (n *Node) blobGet(w http.ResponseWriter, r *http.Request) {
	sum, ok := n.blobSum(w, r)
	if !ok {
		return
	}
	f, err := os.Open(n.blobs.Path(sum))
	if err != nil {
		http.Error(w, "drove: no such blob", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	n.met.blobBytesOut.Add(float64(fi.Size()))
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// blobPut stores a blob; its contents must hash to its name. A blob the
// node already has is acknowledged without reading the body.
func (n *Node) blobPut(w http.ResponseWriter, r *http.Request) {
	sum, ok := n.blobSum(w, r)
	if !ok {
		return
	}
	if n.blobs.Has(sum) {
		w.WriteHeader(http.StatusOK)
		return
	}
	limit := n.cfg.MaxFileSize
	if limit > 0 {
		if r.ContentLength > limit {
			http.Error(w, fmt.Sprintf("drove: file of %d bytes over the node's limit of %d (--max-file-size)", r.ContentLength, limit), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	// A large buffer: io.Copy then writes (and hashes) 1 MiB at a time
	// instead of 32 KiB, which halves the cost of a big file.
	written, err := n.blobs.Put(sum, bufio.NewReaderSize(r.Body, 1<<20))
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		n.met.blobBytesIn.Add(float64(written))
		w.WriteHeader(http.StatusCreated)
	case errors.As(err, &mbe):
		http.Error(w, fmt.Sprintf("drove: file over the node's limit of %d bytes (--max-file-size)", limit), http.StatusRequestEntityTooLarge)
	case errors.Is(err, blob.ErrSumMismatch):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		n.log.Warn("storing blob", "sum", sum, "err", err)
		http.Error(w, "drove: storing blob: "+err.Error(), http.StatusInternalServerError)
	}
}
