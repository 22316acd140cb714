package backup

import (
	"bytes"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
)

// FuzzRead: any input is either refused with an error or read into a
// snapshot whose file reads back and writes the same bytes again (empty
// and absent lists may differ in memory, not in the file); Read never
// panics.
func FuzzRead(f *testing.F) {
	st := fsm.NewState()
	fsm.Apply(st, 1, &fsm.CreateSub{Sub: fsm.Subscription{ID: "s", SubSpec: fsm.SubSpec{Secret: "whsec_x"}}})
	fsm.Apply(st, 2, &fsm.CreateToken{Token: fsm.Token{ID: "t", Role: fsm.RoleSuper, Hash: "h"}})
	var good bytes.Buffer
	if err := Write(&good, FromState(st, Header{Applied: 2})); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte(`{"format":"hookswitch-snapshot","version":1,"subs":0,"tokens":0,"nodes":0}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := Read(bytes.NewReader(in), nil)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, s); err != nil {
			t.Fatal(err)
		}
		first := out.Bytes()
		again, err := Read(bytes.NewReader(first), nil)
		if err != nil {
			t.Fatalf("a file Read accepted does not read back after Write: %v", err)
		}
		var out2 bytes.Buffer
		if err := Write(&out2, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, out2.Bytes()) {
			t.Fatalf("round trip changed the file:\n%s\n%s", first, out2.Bytes())
		}
	})
}
