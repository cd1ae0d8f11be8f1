package peer

import (
	"math"
	"testing"
)

func TestRatio(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		values []float64
		higher bool
		want   string
	}{
		{"lower is better: the smallest peer", []float64{50, 100, 80}, false, "0.62"},
		{"higher is better: the largest peer", []float64{90, 46, 42}, true, "1.96"},
		{"a peer not measured is left out", []float64{10, nan, 20}, false, "0.50"},
		{"no peer measured", []float64{10, nan}, false, "-"},
		{"subject not measured", []float64{nan, 10}, false, "-"},
		{"no peers", []float64{10}, false, "-"},
		{"best peer zero", []float64{1, 0}, false, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ratio(Row{Values: tc.values, HigherBetter: tc.higher}); got != tc.want {
				t.Errorf("ratio(%v) = %s, want %s", tc.values, got, tc.want)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	rts := []*Runtime{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	for trial, want := range []string{"abc", "bca", "cab", "abc"} {
		got := ""
		for _, r := range Order(rts, trial) {
			got += r.Name
		}
		if got != want {
			t.Errorf("Order(trial %d) = %s, want %s", trial, got, want)
		}
	}
}
