package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSchedulerStateHelp: drove scheduler --help explains --state.
func TestSchedulerStateHelp(t *testing.T) {
	var help bytes.Buffer
	cmd := newSchedulerCmd()
	cmd.SetArgs([]string{"--help"})
	cmd.SetOut(&help)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--state", "kill -9", "loses nothing"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help does not say %q", want)
		}
	}
}

// TestSchedulerStateOneProcess: a second scheduler on the same --state
// fails to start instead of sharing the database.
func TestSchedulerStateOneProcess(t *testing.T) {
	dir := t.TempDir()
	db, err := openState(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db2, err := openState(dir, false)
	if err == nil {
		db2.Close()
		t.Fatal("a second scheduler opened the same state")
	}
	if !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("error does not say why: %v", err)
	}
}
