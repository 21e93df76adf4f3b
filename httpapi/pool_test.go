package httpapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sbagenthub/twilio-worker/pool"
	"github.com/sbagenthub/twilio-worker/ratelimit"
)

func TestPoolEndpoints(t *testing.T) {
	t.Parallel()
	const a, b = "+12025550101", "+13125550102"
	s := newAPIServer(t, func(s *Server) {
		lim := ratelimit.New(s.Redis, ratelimit.Config{Sender: ratelimit.Rate{N: 2, Per: time.Second, Burst: 1}})
		s.Pool = pool.New(s.Redis, lim, pool.Config{Numbers: []string{a, b}})
	})
	if _, err := s.Pool.TakeOut(context.Background(), a, 21606, "Twilio 21606: not an SMS-capable number of the account", true); err != nil {
		t.Fatal(err)
	}
	r := do(t, http.MethodGet, s.url+"/v1/pool", nil, nil)
	if r.status != 200 {
		t.Fatalf("GET /v1/pool: %d %s", r.status, r.body)
	}
	v := r.json(t)
	nums, _ := v["numbers"].([]any)
	first, _ := nums[0].(map[string]any)
	out, _ := first["out"].(map[string]any)
	if v["inRotation"] != 1.0 || len(nums) != 2 || first["number"] != a || first["inRotation"] != false || out["code"] != 21606.0 || first["rate"] != "2/s" {
		t.Fatalf("GET /v1/pool: %s", r.body)
	}
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/v1/pool/out/hello", 422, "invalid_number"},
		{"/v1/pool/out/+14155550100", 404, "not_in_pool"},
	} {
		r := do(t, http.MethodDelete, s.url+tc.path, nil, nil)
		if r.status != tc.status || r.apiErr(t).Code != tc.code {
			t.Errorf("DELETE %s: %d %s; want %d %s", tc.path, r.status, r.body, tc.status, tc.code)
		}
	}
	r = do(t, http.MethodDelete, s.url+"/v1/pool/out/"+a, nil, nil)
	if v := r.json(t); r.status != 200 || v["restored"] != true {
		t.Fatalf("DELETE /v1/pool/out/%s: %d %s", a, r.status, r.body)
	}
	if ok, err := s.Pool.InRotation(context.Background(), a); err != nil || !ok {
		t.Fatalf("restored number in rotation: %v %v", ok, err)
	}
	if v := do(t, http.MethodDelete, s.url+"/v1/pool/out/"+a, nil, nil).json(t); v["restored"] != false {
		t.Errorf("restoring a number in rotation: %v; want restored false", v)
	}

	none := newAPIServer(t, nil)
	if r := do(t, http.MethodGet, none.url+"/v1/pool", nil, nil); r.status != 404 || r.apiErr(t).Code != "no_pool" {
		t.Errorf("GET /v1/pool without a pool: %d %s", r.status, r.body)
	}
}
