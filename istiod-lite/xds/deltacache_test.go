package xds

import (
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"istio.io/istio/pkg/workloadapi/security"

	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

// fakeStream plays go-control-plane's delta server for one subscription:
// it keeps the subscription, opens watches and applies responses the way
// server/delta/v3 does.
type fakeStream struct {
	t     *testing.T
	c     *deltaCache
	sub   streamv3.Subscription
	ch    chan cachev3.DeltaResponse
	nonce int
}

func newFakeStream(t *testing.T, c *deltaCache, subscribe []string, initial map[string]string) *fakeStream {
	fs := &fakeStream{t: t, c: c, ch: make(chan cachev3.DeltaResponse, 2)}
	fs.sub = streamv3.NewDeltaSubscription(subscribe, nil, initial, true)
	fs.watch(&discovery.DeltaDiscoveryRequest{TypeUrl: c.typeURL, ResourceNamesSubscribe: subscribe, InitialResourceVersions: initial})
	return fs
}

func (fs *fakeStream) watch(req *discovery.DeltaDiscoveryRequest) {
	fs.t.Helper()
	if _, err := fs.c.CreateDeltaWatch(req, fs.sub, fs.ch); err != nil {
		fs.t.Fatalf("CreateDeltaWatch: %v", err)
	}
}

// next returns the pending response (nil if none) and records it as sent.
func (fs *fakeStream) next() *discovery.DeltaDiscoveryResponse {
	fs.t.Helper()
	select {
	case r := <-fs.ch:
		resp, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			fs.t.Fatal(err)
		}
		fs.sub.SetReturnedResources(r.GetReturnedResources())
		fs.nonce++
		return resp
	default:
		return nil
	}
}

// ack re-opens the watch as the server does on an ACK.
func (fs *fakeStream) ack() {
	fs.watch(&discovery.DeltaDiscoveryRequest{TypeUrl: fs.c.typeURL, ResponseNonce: "n"})
}

func respNames(r *discovery.DeltaDiscoveryResponse) (upd, rem []string) {
	for _, res := range r.GetResources() {
		upd = append(upd, res.GetName())
	}
	slices.Sort(upd)
	rem = slices.Clone(r.GetRemovedResources())
	slices.Sort(rem)
	return upd, rem
}

func mustUpdate(t *testing.T, c *deltaCache, up map[string]types.Resource, rm ...string) {
	t.Helper()
	if err := c.update(up, rm, nil); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, what string, r *discovery.DeltaDiscoveryResponse, upd, rem []string) {
	t.Helper()
	if r == nil {
		t.Fatalf("%s: no response, want upserts %v removes %v", what, upd, rem)
	}
	gu, gr := respNames(r)
	if !slices.Equal(gu, upd) || !slices.Equal(gr, rem) {
		t.Errorf("%s: upserts %v removes %v, want %v %v", what, gu, gr, upd, rem)
	}
}

func TestDeltaCacheWildcard(t *testing.T) {
	a, b := pol("a", security.Action_ALLOW), pol("b", security.Action_DENY)
	c := newDeltaCache(pkgxds.AuthorizationType)

	fs := newFakeStream(t, c, nil, nil)
	expect(t, "initial empty wildcard reply", fs.next(), nil, nil)
	fs.ack()
	if r := fs.next(); r != nil || c.numWatches() != 1 {
		t.Fatalf("ACK with nothing new: response %v, %d watches; want parked", r, c.numWatches())
	}

	mustUpdate(t, c, map[string]types.Resource{"a": a, "b": b})
	expect(t, "first resources", fs.next(), []string{"a", "b"}, nil)
	// A change while the response is unacknowledged is found on the ACK
	// through the change log.
	mustUpdate(t, c, map[string]types.Resource{"b": pol("b", security.Action_ALLOW)})
	if r := fs.next(); r != nil {
		t.Fatalf("response without an open watch: %v", r)
	}
	fs.ack()
	expect(t, "change during flight", fs.next(), []string{"b"}, nil)
	fs.ack()
	mustUpdate(t, c, nil, "a")
	expect(t, "removal", fs.next(), nil, []string{"a"})
	fs.ack()
	// Same content re-set: same version hash, nothing to send.
	mustUpdate(t, c, map[string]types.Resource{"b": pol("b", security.Action_ALLOW)})
	if r := fs.next(); r != nil {
		t.Errorf("equal content sent again: %v", r)
	}
	if _, marked := fs.sub.ReturnedResources()[syncMarker]; !marked {
		t.Error("version map carries no sync marker")
	}
}

func TestDeltaCacheFarBehindRescans(t *testing.T) {
	c := newDeltaCache(pkgxds.AuthorizationType)
	mustUpdate(t, c, map[string]types.Resource{"keep": pol("keep", security.Action_ALLOW), "gone": pol("gone", security.Action_ALLOW)})
	fs := newFakeStream(t, c, nil, nil)
	expect(t, "initial", fs.next(), []string{"gone", "keep"}, nil)
	// More changes than the log keeps while the response is in flight.
	for i := range keptChanges + 5 {
		mustUpdate(t, c, map[string]types.Resource{"churn": pol("churn"+string(rune('a'+i%26)), security.Action_DENY)})
	}
	mustUpdate(t, c, nil, "gone")
	fs.ack()
	expect(t, "full rescan", fs.next(), []string{"churn"}, []string{"gone"})
}

func TestDeltaCacheInitialVersions(t *testing.T) {
	a, b := pol("a", security.Action_ALLOW), pol("b", security.Action_DENY)
	c := newDeltaCache(pkgxds.AuthorizationType)
	mustUpdate(t, c, map[string]types.Resource{"a": a, "b": b})
	first := newFakeStream(t, c, []string{"*"}, nil)
	expect(t, "initial", first.next(), []string{"a", "b"}, nil)
	held := map[string]string{}
	for k, v := range first.sub.ReturnedResources() {
		held[k] = v
	}
	held["old"] = "x"       // deleted while away
	held[syncMarker] = "99" // a marker from another server must not be trusted
	delete(held, "b")       // never received
	again := newFakeStream(t, c, []string{"*"}, held)
	expect(t, "reconnect", again.next(), []string{"b"}, []string{"old"})
}

func TestDeltaCacheNamedSubscription(t *testing.T) {
	c := newDeltaCache(pkgxds.AuthorizationType)
	mustUpdate(t, c, map[string]types.Resource{"a": pol("a", security.Action_ALLOW), "b": pol("b", security.Action_ALLOW)})
	fs := newFakeStream(t, c, []string{"a", "missing"}, nil)
	expect(t, "named initial", fs.next(), []string{"a"}, nil)
	fs.ack()
	mustUpdate(t, c, map[string]types.Resource{"b": pol("b", security.Action_DENY)})
	if r := fs.next(); r != nil {
		t.Errorf("change of an unsubscribed name sent: %v", r)
	}
	mustUpdate(t, c, map[string]types.Resource{"missing": pol("m", security.Action_DENY)})
	expect(t, "subscribed name appears", fs.next(), []string{"missing"}, nil)

	// Unsubscribe a: the server forgets it; the response tells nothing new
	// but a later resubscribe resends it.
	fs.sub.UpdateResourceSubscriptions(nil, []string{"a"})
	fs.watch(&discovery.DeltaDiscoveryRequest{TypeUrl: c.typeURL, ResponseNonce: "n", ResourceNamesUnsubscribe: []string{"a"}})
	if r := fs.next(); r != nil {
		t.Errorf("unsubscribe answered with %v", r)
	}
	fs.sub.UpdateResourceSubscriptions([]string{"a"}, nil)
	fs.watch(&discovery.DeltaDiscoveryRequest{TypeUrl: c.typeURL, ResponseNonce: "n", ResourceNamesSubscribe: []string{"a"}})
	expect(t, "resubscribe", fs.next(), []string{"a"}, nil)
}

func TestDeltaCacheRefusesSotW(t *testing.T) {
	c := newDeltaCache(pkgxds.AuthorizationType)
	if _, err := c.CreateWatch(&cachev3.Request{TypeUrl: c.typeURL}, streamv3.NewSotwSubscription(nil, true), make(chan cachev3.Response, 1)); err == nil {
		t.Error("SotW watch accepted")
	}
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{TypeUrl: "other"}, streamv3.NewDeltaSubscription(nil, nil, nil, true), nil); err == nil {
		t.Error("watch of another type accepted")
	}
}
