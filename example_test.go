package drove_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/drove-dev/drove"
)

// Cube is registered at package initialisation, as every drove function must
// be, so that worker processes know it too.
var Cube = drove.Func("example.cube", func(ctx context.Context, n int) (int, error) {
	return n * n * n, nil
})

func ExampleNewCluster() {
	ctx := context.Background()
	// In a real program, drove.Main() is the first statement of main.
	c, err := drove.NewCluster(ctx, Cube)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close(ctx)
	var jobs []*drove.Job[int]
	for n := 1; n <= 3; n++ {
		j, err := c.Submit(ctx, n)
		if err != nil {
			fmt.Println(err)
			return
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		v, err := j.Result(ctx)
		fmt.Println(j.ID(), v, err)
	}
	// Output:
	// 1 1 <nil>
	// 2 8 <nil>
	// 3 27 <nil>
}

func ExampleProgram() {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, drove.Program("echo"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close(ctx)
	j, _ := c.Submit(ctx, []string{"hello", "world"})
	code, err := j.Result(ctx)
	fmt.Printf("exit %d, %v, stdout %q\n", code, err, j.Stdout())
	// Output: exit 0, <nil>, stdout "hello world\n"
}

func ExampleStats_Print() {
	s := drove.Stats{
		Nodes: []drove.NodeStats{
			{Name: "node1.example.com", CPUs: 8, Jobs: 10, NodeTime: 123400 * time.Millisecond, Sent: 1230, Received: 3480},
			{Name: "n2", CPUs: 2, Jobs: 0},
			{Name: "10.0.0.9:9701", Lost: true},
		},
		Pending:      3,
		TotalJobTime: 123400 * time.Millisecond,
		WallTime:     31 * time.Second,
	}
	s.Print(os.Stdout)
	// Output:
	//                  Node |  CPUs |    Jobs |  Sec/Job | Node Time Sec |    Sent |    Rcvd
	// --------------------------------------------------------------------------------------
	//     node1.example.com |     8 |      10 |     12.3 |         123.4 |   1.2 K |   3.4 K
	//                    n2 |     2 |       0 |      0.0 |           0.0 |     0 B |     0 B
	//  10.0.0.9:9701 (lost) |     0 |       0 |      0.0 |           0.0 |     0 B |     0 B
	//
	// Jobs pending: 3
	// Total job time: 123.400 sec, wall time: 31.000 sec, speedup: 3.981
}
