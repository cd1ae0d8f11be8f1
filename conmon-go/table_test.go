package main

import (
	"testing"
	"time"
)

func TestTableCreateReservation(t *testing.T) {
	tbl := newCtrTable("pod")
	done, err := tbl.reserve("c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.reserve("c1"); err == nil {
		t.Fatal("a second create of an id being created was allowed")
	}
	// A delete waits for the create to end and then sees its container.
	seen := make(chan bool)
	go func() {
		tbl.waitCreated("c1")
		seen <- tbl.has("c1")
	}()
	select {
	case <-seen:
		t.Fatal("waitCreated returned while the create was under way")
	case <-time.After(50 * time.Millisecond):
	}
	tbl.add(&ctr{id: "c1"})
	done()
	if !<-seen {
		t.Fatal("after the create, the delete did not see the container it published")
	}
	if _, err := tbl.reserve("c1"); err == nil {
		t.Fatal("an existing id was reserved")
	}
	tbl.waitCreated("unknown") // returns at once
}
