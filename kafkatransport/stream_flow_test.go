package kafkatransport

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The byte budget of flow control: what a sender may send, what a receiver
// accepts whatever order the messages arrive in, and what it refuses.
func TestFlowByteBudget(t *testing.T) {
	msg := func(n int) inFrame { return inFrame{kind: frameMessage, value: make([]byte, n)} }

	t.Run("sender starts a message while under the byte credit", func(t *testing.T) {
		f := newFlow(8, 0, 100, 100, time.Second)
		for i, size := range []int{50, 200} { // the second overshoots, alone
			if _, ok, err, _ := f.reserve(size); !ok || err != nil {
				t.Fatalf("reserve %d (%d bytes) = %v, %v; want credit", i, size, ok, err)
			}
		}
		if _, ok, _, _ := f.reserve(1); ok {
			t.Fatal("reserve after 250 of 100 bytes granted succeeded")
		}
		f.credit(100, 300)
		if _, ok, _, _ := f.reserve(1); !ok {
			t.Fatal("reserve after more byte credit failed")
		}
		g := newFlow(8, 0, 2, 0, time.Second) // no byte limit: messages only
		for range 2 {
			if _, ok, _, _ := g.reserve(1 << 20); !ok {
				t.Fatal("reserve without a byte limit failed")
			}
		}
		if _, ok, _, _ := g.reserve(1); ok {
			t.Fatal("reserve past the message credit succeeded")
		}
	})

	t.Run("receiver takes an overshoot in any order", func(t *testing.T) {
		f := newFlow(8, 100, 0, 0, time.Second)
		f.receive(2, msg(200)) // the overshooting message first
		f.receive(1, msg(50))
		if err := f.err(); err != nil {
			t.Fatalf("a sender that kept the rule was refused: %v", err)
		}
		if fr, _, _, _ := f.next(); fr == nil || len(fr.value) != 50 {
			t.Fatalf("first frame = %+v, want the 50-byte message", fr)
		}
	})

	t.Run("receiver refuses a sender past its byte credit", func(t *testing.T) {
		f := newFlow(8, 100, 0, 0, time.Second)
		f.receive(1, msg(60))
		f.receive(2, msg(60)) // sent at 60 of 100: fine, 120 now
		f.receive(3, msg(1))  // sent at 120 of 100: a broken rule
		if status.Code(f.err()) != codes.ResourceExhausted {
			t.Fatalf("err = %v, want ResourceExhausted", f.err())
		}
	})

	t.Run("credit goes out after half the bytes were read", func(t *testing.T) {
		f := newFlow(1000, 100, 0, 0, time.Second)
		f.receive(1, msg(30))
		f.receive(2, msg(30))
		if _, g, _, _ := f.next(); g.msgs != 0 {
			t.Fatalf("credit after 30 of 100 bytes read: %+v", g)
		}
		_, g, _, _ := f.next()
		if g != (grant{1002, 160}) {
			t.Fatalf("credit after 60 of 100 bytes read = %+v, want 1002 messages and 160 bytes", g)
		}
	})
}

// A peer that announced no byte window may not know byte credit (an older
// version): past the byte credit it is not refused, and credit in bytes
// still goes out for peers that keep to it.
func TestFlowTrustsPeersWithoutBytes(t *testing.T) {
	f := newFlow(8, 100, 0, 0, time.Second)
	f.trustNoBytes()
	for i := range uint64(4) {
		f.receive(i+1, inFrame{kind: frameMessage, value: make([]byte, 60)})
	}
	if err := f.err(); err != nil {
		t.Fatalf("a peer without a byte window was refused: %v", err)
	}
	var last grant
	for range 4 {
		if fr, g, _, _ := f.next(); fr == nil {
			t.Fatal("a message was lost")
		} else if g.msgs > 0 {
			last = g
		}
	}
	if last.bytes == 0 {
		t.Fatalf("no byte credit went out: %+v", last)
	}
}
