package peer

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Row is one figure of a comparison table: a value per runtime, in the
// order of the runtimes (NaN: not measured).
type Row struct {
	Figure string
	Values []float64
	Format string
	// HigherBetter: the best peer is the largest value (a throughput),
	// not the smallest (a time, a size).
	HigherBetter bool
}

// PrintTable prints the rows with a column per runtime and, when there
// are peers, the ratio of the runtime under test (the first) to the best
// peer for that figure.
func PrintTable(rts []*Runtime, rows []Row) {
	w := 44
	for _, r := range rows {
		w = max(w, len(r.Figure))
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%-*s", w, "figure")
	for _, r := range rts {
		fmt.Fprintf(&head, " %14s", r.Name)
	}
	if len(rts) > 1 {
		fmt.Fprintf(&head, " %14s", rts[0].Name+"/best")
	}
	fmt.Println(head.String())
	for _, row := range rows {
		var b strings.Builder
		fmt.Fprintf(&b, "%-*s", w, row.Figure)
		for _, v := range row.Values {
			s := "-"
			if !math.IsNaN(v) {
				s = fmt.Sprintf(row.Format, v)
			}
			fmt.Fprintf(&b, " %14s", s)
		}
		if len(rts) > 1 {
			fmt.Fprintf(&b, " %14s", ratio(row))
		}
		fmt.Println(b.String())
	}
}

func ratio(row Row) string {
	if len(row.Values) < 2 || math.IsNaN(row.Values[0]) {
		return "-"
	}
	best := math.NaN()
	for _, v := range row.Values[1:] {
		switch {
		case math.IsNaN(v):
		case math.IsNaN(best), row.HigherBetter && v > best, !row.HigherBetter && v < best:
			best = v
		}
	}
	if math.IsNaN(best) || best == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", row.Values[0]/best)
}

// Pct is the p-quantile of d (0 when empty).
func Pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// Median is the median of v (NaN when empty).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
