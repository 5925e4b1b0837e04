package sshexec_test

import (
	"context"
	"fmt"
	"log"

	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Shell commands on SSH hosts through the scheduling core: one pool for all
// hosts, one executor per host, registered as a node with the executor's
// slot count (here the host's CPU count, asked when the executor is made).
func Example() {
	ctx := context.Background()
	pool, err := sshconn.NewPool(sshconn.Config{}) // ~/.ssh/config, agent, known_hosts
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	s := sched.New(sched.Config{Reentrant: true})
	defer s.Close(ctx)
	for _, target := range []string{"alice@build1", "ssh://build2:2222"} {
		ex, err := sshexec.New(ctx, pool, target, sshexec.Config{}, s)
		if err != nil {
			log.Printf("%s: %v", target, err) // *sshconn.ConnError or *sshconn.HostKeyError
			continue
		}
		s.AddNode(target, ex.Slots(), ex)
	}
	t := &sched.Task{Input: []byte("uname -a"), Retries: 1}
	s.Submit(ctx, t)
	t.Wait(ctx)
	fmt.Printf("state %d on %s: %s", t.State(), t.NodeName(), t.Result().Stdout)
}
