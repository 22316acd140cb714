package fsm

import (
	"errors"
	"testing"
)

// TestApplyRotationKeepsPreviousSecret: an update that changes the secret
// keeps the old one until the proposer's overlap end; one that keeps it
// leaves the previous secret alone; a second rotation replaces it; a zero
// overlap drops it.
func TestApplyRotationKeepsPreviousSecret(t *testing.T) {
	st := stateWith(sub("a"))
	update := func(idx uint64, secret string, until int64) *Subscription {
		t.Helper()
		spec := st.Subs["a"].SubSpec
		spec.Secret = secret
		res, _ := Apply(st, idx, &UpdateSub{ID: "a", Spec: spec, AtMs: 2000, SecretOverlapUntilMs: until})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Sub
	}
	s := update(2, "whsec_new", 5000)
	if s.Secret != "whsec_new" || s.PrevSecret != "whsec_x" || s.PrevSecretUntilMs != 5000 {
		t.Fatalf("after rotation: secret %q prev %q until %d", s.Secret, s.PrevSecret, s.PrevSecretUntilMs)
	}
	s = update(3, "whsec_new", 9000) // no change of secret
	if s.PrevSecret != "whsec_x" || s.PrevSecretUntilMs != 5000 {
		t.Fatalf("an update keeping the secret changed the previous one: %q until %d", s.PrevSecret, s.PrevSecretUntilMs)
	}
	s = update(4, "whsec_newer", 9000)
	if s.PrevSecret != "whsec_new" || s.PrevSecretUntilMs != 9000 {
		t.Fatalf("second rotation: prev %q until %d", s.PrevSecret, s.PrevSecretUntilMs)
	}
	s = update(5, "whsec_last", 0)
	if s.PrevSecret != "" || s.PrevSecretUntilMs != 0 {
		t.Fatalf("rotation without overlap kept %q until %d", s.PrevSecret, s.PrevSecretUntilMs)
	}
}

// TestApplyMaxPerCreator: the limit counts the creating token's
// subscriptions at apply time, so concurrent creates cannot pass it.
func TestApplyMaxPerCreator(t *testing.T) {
	st := NewState()
	create := func(idx uint64, id, by string, max int) error {
		s := sub(id)
		s.PostURL += "/" + id
		s.CreatedBy = by
		res, _ := Apply(st, idx, &CreateSub{Sub: s, Unique: true, MaxPerCreator: max})
		return res.Err
	}
	for i, id := range []string{"a", "b"} {
		if err := create(uint64(i+1), id, "tok_1", 2); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	if err := create(3, "c", "tok_1", 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("third create by tok_1: %v, want ErrLimit", err)
	}
	if err := create(4, "c", "tok_2", 2); err != nil {
		t.Fatalf("another token: %v", err)
	}
	if err := create(5, "d", "tok_1", 0); err != nil {
		t.Fatalf("no limit: %v", err)
	}
	if n := st.CountCreatedBy("tok_1"); n != 3 {
		t.Fatalf("CountCreatedBy = %d", n)
	}
}
