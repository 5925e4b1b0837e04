package main

import (
	"fmt"
	"io"
)

// monitorFlagUsage is the --monitor flag's help, the same for every
// command that has it.
const monitorFlagUsage = `serve a web monitor of the jobs at host:port (e.g. 127.0.0.1:8181; port 0 picks one), and Prometheus metrics at /metrics there; a loopback address unless a cluster secret is set, which browsers then sign in with`

// announceMonitor says where the monitor serves, if it does.
func announceMonitor(w io.Writer, c interface{ MonitorAddr() string }) {
	if addr := c.MonitorAddr(); addr != "" {
		fmt.Fprintf(w, "drove: monitor at http://%s/\n", addr)
	}
}
