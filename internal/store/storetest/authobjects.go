package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
)

func (r *runner) testAuthObjects(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	ao, ok := s.(store.AuthObjects)
	if !ok {
		t.Skip("store.AuthObjects: not implemented")
	}
	r.authObjects.Store(true)

	same := func(call string, got *store.AuthObject, want store.AuthObject) {
		t.Helper()
		if got.Kind != want.Kind || got.ID != want.ID || !bytes.Equal(got.Lookup, want.Lookup) || got.Parent != want.Parent ||
			!bytes.Equal(got.Data, want.Data) || got.Version != want.Version || !got.Expires.Equal(want.Expires) ||
			(!got.Expires.IsZero() && got.Expires.Location() != time.UTC) {
			t.Errorf("%s = %+v, want %+v", call, *got, want)
		}
	}
	ids := func(os []store.AuthObject) string {
		var b bytes.Buffer
		for _, o := range os {
			fmt.Fprintf(&b, "%s/%s ", o.Kind, o.ID)
		}
		return b.String()
	}

	if os, err := ao.AuthObjects(ctx, "user", ""); err != nil || len(os) != 0 {
		t.Errorf("AuthObjects(user) on an empty store = %v, %v; want none", os, err)
	}
	if _, err := ao.AuthObject(ctx, "user", "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuthObject(user, u1) on an empty store = %v, want ErrNotFound", err)
	}
	objs := []store.AuthObject{
		{Kind: "user", ID: "u2", Lookup: []byte("name-b"), Data: []byte("sealed b")},
		{Kind: "user", ID: "u1", Lookup: []byte("name-a"), Data: []byte("sealed a")},
		{Kind: "session", ID: "s1", Lookup: []byte("name-a"), Parent: "u1", Data: []byte{}, Expires: at0(10)},
		{Kind: "session", ID: "s2", Lookup: []byte("tok2"), Parent: "u1", Data: []byte("x"), Expires: at0(20)},
		{Kind: "session", ID: "s3", Parent: "u2", Data: []byte("y"), Expires: at0(30)},
		{Kind: "session", ID: "s4", Data: []byte("z")},
	}
	for _, o := range objs {
		o.Version = 7 // ignored
		if err := ao.CreateAuthObject(ctx, o); err != nil {
			t.Fatalf("CreateAuthObject(%s %s) = %v", o.Kind, o.ID, err)
		}
	}
	for i := range objs {
		objs[i].Version = 1
	}
	for _, o := range objs {
		got, err := ao.AuthObject(ctx, o.Kind, o.ID)
		if err != nil {
			t.Fatalf("AuthObject(%s, %s) = %v", o.Kind, o.ID, err)
		}
		same("AuthObject("+o.Kind+", "+o.ID+")", got, o)
		if len(o.Lookup) > 0 {
			got, err := ao.AuthObjectByLookup(ctx, o.Kind, o.Lookup)
			if err != nil {
				t.Fatalf("AuthObjectByLookup(%s, %q) = %v", o.Kind, o.Lookup, err)
			}
			same("AuthObjectByLookup("+o.Kind+")", got, o)
		}
	}
	if _, err := ao.AuthObjectByLookup(ctx, "device", []byte("name-a")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuthObjectByLookup of another kind = %v, want ErrNotFound", err)
	}
	if _, err := ao.AuthObjectByLookup(ctx, "user", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuthObjectByLookup(user, nil) = %v, want ErrNotFound", err)
	}
	for _, dup := range []store.AuthObject{
		{Kind: "user", ID: "u1", Data: []byte("again")},
		{Kind: "user", ID: "u3", Lookup: []byte("name-a"), Data: []byte("same name")},
	} {
		if err := ao.CreateAuthObject(ctx, dup); !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateAuthObject(%s %s) taken = %v, want ErrExists", dup.Kind, dup.ID, err)
		}
	}
	// The same id in another kind is another object.
	if err := ao.CreateAuthObject(ctx, store.AuthObject{Kind: "device", ID: "u1", Data: []byte("d")}); err != nil {
		t.Errorf("CreateAuthObject(device u1) = %v", err)
	}

	if got, err := ao.AuthObjects(ctx, "user", ""); err != nil || ids(got) != "user/u1 user/u2 " {
		t.Errorf("AuthObjects(user) = %q, %v; want u1 u2", ids(got), err)
	}
	if got, err := ao.AuthObjects(ctx, "session", "u1"); err != nil || ids(got) != "session/s1 session/s2 " {
		t.Errorf("AuthObjects(session, u1) = %q, %v; want s1 s2", ids(got), err)
	}
	if got, err := ao.AuthObjects(ctx, "session", "nobody"); err != nil || len(got) != 0 {
		t.Errorf("AuthObjects(session, nobody) = %q, %v; want none", ids(got), err)
	}

	// Compare-and-swap updates.
	u1 := objs[1]
	u1.Lookup, u1.Data, u1.Expires = []byte("name-c"), []byte("sealed a2"), at0(99)
	v, err := ao.UpdateAuthObject(ctx, u1)
	if err != nil || v != 2 {
		t.Fatalf("UpdateAuthObject(u1 at 1) = %d, %v; want 2", v, err)
	}
	u1.Version = 2
	if got, err := ao.AuthObjectByLookup(ctx, "user", []byte("name-c")); err != nil {
		t.Errorf("AuthObjectByLookup(new lookup) = %v", err)
	} else {
		same("after update", got, u1)
	}
	if _, err := ao.AuthObjectByLookup(ctx, "user", []byte("name-a")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old lookup after update = %v, want ErrNotFound", err)
	}
	stale := u1
	stale.Version = 1
	stale.Data = []byte("stale")
	if _, err := ao.UpdateAuthObject(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateAuthObject at a stale version = %v, want ErrConflict", err)
	}
	taken := u1
	taken.Lookup = []byte("name-b")
	if _, err := ao.UpdateAuthObject(ctx, taken); !errors.Is(err, store.ErrExists) {
		t.Errorf("UpdateAuthObject to a taken lookup = %v, want ErrExists", err)
	}
	if _, err := ao.UpdateAuthObject(ctx, store.AuthObject{Kind: "user", ID: "nobody", Version: 1, Data: []byte("x")}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAuthObject of a missing object = %v, want ErrNotFound", err)
	}
	cleared := u1
	cleared.Lookup, cleared.Expires = nil, time.Time{}
	if v, err := ao.UpdateAuthObject(ctx, cleared); err != nil || v != 3 {
		t.Errorf("UpdateAuthObject(clear lookup) = %d, %v; want 3", v, err)
	}
	cleared.Version = 3
	if got, err := ao.AuthObject(ctx, "user", "u1"); err != nil {
		t.Errorf("AuthObject(u1) = %v", err)
	} else {
		same("after clearing", got, cleared)
	}

	// Of many racing updates from one version, exactly one wins.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := cleared
			o.Data = []byte(fmt.Sprint("racer ", i))
			_, err := ao.UpdateAuthObject(ctx, o)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("racing UpdateAuthObject = %v, want nil or ErrConflict", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d of 8 racing updates won, want 1", wins)
	}

	// Deletes.
	if n, err := ao.DeleteAuthObjects(ctx, "session", "u1"); err != nil || n != 2 {
		t.Errorf("DeleteAuthObjects(session, u1) = %d, %v; want 2", n, err)
	}
	if _, err := ao.DeleteAuthObjects(ctx, "session", ""); err == nil {
		t.Errorf("DeleteAuthObjects(session, \"\") succeeded; it must refuse to delete every session")
	}
	if got, err := ao.AuthObjects(ctx, "session", ""); err != nil || ids(got) != "session/s3 session/s4 " {
		t.Errorf("sessions after DeleteAuthObjects = %q, %v; want s3 s4", ids(got), err)
	}
	if err := ao.DeleteAuthObject(ctx, "user", "u2"); err != nil {
		t.Errorf("DeleteAuthObject(user, u2) = %v", err)
	}
	if err := ao.DeleteAuthObject(ctx, "user", "u2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteAuthObject(user, u2) again = %v, want ErrNotFound", err)
	}
	if _, err := ao.AuthObjectByLookup(ctx, "user", []byte("name-b")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("lookup of a deleted object = %v, want ErrNotFound", err)
	}
	if err := ao.CreateAuthObject(ctx, store.AuthObject{Kind: "user", ID: "u4", Lookup: []byte("name-b"), Data: []byte("reuse")}); err != nil {
		t.Errorf("a deleted object's lookup is free again: CreateAuthObject = %v", err)
	}

	// Purge: s3 expires at 30 (gone at 30), s4 never.
	if n, err := ao.PurgeAuthObjects(ctx, at0(29)); err != nil || n != 0 {
		t.Errorf("PurgeAuthObjects(29) = %d, %v; want 0", n, err)
	}
	if n, err := ao.PurgeAuthObjects(ctx, at0(30)); err != nil || n != 1 {
		t.Errorf("PurgeAuthObjects(30) = %d, %v; want 1", n, err)
	}
	if got, err := ao.AuthObjects(ctx, "session", ""); err != nil || ids(got) != "session/s4 " {
		t.Errorf("sessions after purge = %q, %v; want s4", ids(got), err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ao.CreateAuthObject(ctx, store.AuthObject{Kind: "user", ID: "late", Data: []byte("x")}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("CreateAuthObject after Close = %v, want ErrClosed", err)
	}
	if _, err := ao.AuthObject(ctx, "user", "u1"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("AuthObject after Close = %v, want ErrClosed", err)
	}
}
