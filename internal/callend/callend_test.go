package callend

import (
	"context"
	"reflect"
	"testing"
)

func TestHooks(t *testing.T) {
	t.Run("without a call mark nothing is registered", func(t *testing.T) {
		if Defer(context.Background(), func() { t.Fatal("ran") }) {
			t.Fatal("Defer registered without a call")
		}
		Run(context.Background()) // no-op
	})
	t.Run("run at the end, last first, once", func(t *testing.T) {
		ctx := With(context.Background())
		var got []int
		for i := range 3 {
			if !Defer(ctx, func() { got = append(got, i) }) {
				t.Fatal("not registered")
			}
		}
		if len(got) != 0 {
			t.Fatal("ran before the end")
		}
		Run(ctx)
		Run(ctx)
		if !reflect.DeepEqual(got, []int{2, 1, 0}) {
			t.Fatalf("ran %v", got)
		}
		Defer(ctx, func() { got = append(got, 9) })
		if got[len(got)-1] != 9 {
			t.Fatal("a hook after the end must run at once")
		}
	})
}
