// Package drove spreads work over many CPUs and machines: a compute cluster
// in the manner of dispy, written in Go.
//
// A computation is a Go function registered by name with [Func], or a
// program with [Program]. [NewCluster] starts a cluster for it — with no
// nodes given, an embedded one using this machine's CPUs — and
// [Cluster.Submit] runs one job per call, returning a [Job] whose
// [Job.Result] waits for the outcome.
//
// Go functions run in worker processes started from the program's own
// executable, so [Main] must be the first statement of main: in a worker it
// serves jobs and exits, in the client it returns.
//
//	var Square = drove.Func("square", func(ctx context.Context, n int) (int, error) {
//		return n * n, nil
//	})
//
//	func main() {
//		drove.Main()
//		ctx := context.Background()
//		c, err := drove.NewCluster(ctx, Square)
//		...
//		j, err := c.Submit(ctx, 7)
//		n, err := j.Result(ctx) // 49
//		c.Close(ctx)
//	}
//
// Arguments and results are encoded with encoding/gob; register interface
// types' concrete types with gob.Register as gob requires.
package drove
