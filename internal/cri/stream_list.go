package cri

import (
	"context"
	"iter"

	"google.golang.org/protobuf/proto"
)

// The Stream* list RPCs (KEP-5825) answer what their List* twins answer,
// in as many messages as it takes: each message carries a batch of at
// least one item, every item is sent once, and the stream ends with EOF
// (the handler returning nil). Items come from the domain one at a time
// and a batch is sent as soon as it is full, so a node with thousands of
// containers never holds the whole list, and no message comes near the
// kubelet's 16 MiB receive limit.
const (
	// streamBatchItems bounds a batch's length: large enough that 10,000
	// containers take a few hundred messages, small enough that a batch
	// of ~1.5 KiB items stays around 100 KiB.
	streamBatchItems = 64
	// streamBatchBytes bounds a batch's encoded size; an item larger
	// than this goes alone.
	streamBatchBytes = 1 << 20
)

// sendBatches sends items in batches; the first error, the producer's or
// send's, ends the stream (and stops the producer), as does ctx ending
// (the client gone or its deadline passed).
func sendBatches[T proto.Message](ctx context.Context, items iter.Seq2[T, error], send func([]T) error) error {
	var batch []T
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		// A fresh slice for the next batch: gRPC may still hold this
		// message after Send returns.
		b := batch
		batch, size = nil, 0
		return send(b)
	}
	for item, err := range items {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n := proto.Size(item)
		if len(batch) > 0 && size+n > streamBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		if batch == nil {
			batch = make([]T, 0, streamBatchItems)
		}
		batch, size = append(batch, item), size+n
		if len(batch) == streamBatchItems {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return flush()
}

// noErrors adapts a producer that cannot fail to sendBatches.
func noErrors[T any](items iter.Seq[T]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for item := range items {
			if !yield(item, nil) {
				return
			}
		}
	}
}
