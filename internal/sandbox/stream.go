package sandbox

import (
	"iter"
	"slices"
	"strings"

	"github.com/noded-dev/noded/internal/state"
)

// streamChunk is how many records a stream that samples (the stats)
// takes at once: they are read in parallel within a chunk, and no more
// than a chunk's samples are held.
const streamChunk = 64

// eachContainer yields copies of the container records matching f, in ID
// order, each copied from the store only when it is reached (the store
// hands out the IDs alone without copying), so that streaming thousands
// of containers never holds all their copies at once. A container removed
// meanwhile is left out, one added meanwhile may be; none comes twice.
func eachContainer(st *state.Store, f containerFilter) iter.Seq[*state.Container] {
	return func(yield func(*state.Container) bool) {
		all := st.ContainerIDs()
		slices.Sort(all)
		for _, id := range all {
			if f != nil && !strings.HasPrefix(string(id), f.GetId()) {
				continue // ruled out by its ID: no copy made
			}
			c, err := st.Container(id)
			if err != nil || !matchContainer(c, f) {
				continue // removed since the IDs were read, or filtered out
			}
			if !yield(c) {
				return
			}
		}
	}
}

// chunks groups seq's items by n (the last chunk may be shorter).
func chunks[T any](seq iter.Seq[T], n int) iter.Seq[[]T] {
	return func(yield func([]T) bool) {
		var chunk []T
		for v := range seq {
			chunk = append(chunk, v)
			if len(chunk) == n {
				if !yield(chunk) {
					return
				}
				chunk = nil
			}
		}
		if len(chunk) > 0 {
			yield(chunk)
		}
	}
}
