package drove_test

import (
	"context"
	"testing"

	"github.com/drove-dev/drove"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, square)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var jobs []*drove.Job[int]
	for i := range 10 {
		j, err := c.Submit(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	for i, j := range jobs {
		got, err := j.Result(ctx)
		if err != nil || got != i*i {
			t.Fatalf("job %d: got %d, %v", i, got, err)
		}
	}
	c.Stats().Print(t.Output())
}
