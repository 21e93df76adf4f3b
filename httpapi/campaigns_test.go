package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/httpapi"
	"github.com/sbagenthub/twilio-worker/internal/redistest"
)

func campaignServer(t *testing.T) string {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	s := &httpapi.Server{Redis: rdb, Client: asynq.NewClientFromRedisClient(rdb), Inspector: asynq.NewInspectorFromRedisClient(rdb)}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func do(t *testing.T, method, url, contentType string, body io.Reader) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

func TestCampaignsAPI(t *testing.T) {
	t.Parallel()
	url := campaignServer(t)

	code, out := do(t, "POST", url+"/v1/campaigns", "application/json", strings.NewReader(
		`{"campaign":"inc-1","body":"API down","recipients":["+14155551234","+14155551234","nope","+14155551235"]}`))
	if code != 202 || out["total"] != 4.0 || out["enqueued"] != 2.0 || out["duplicates"] != 1.0 || len(out["invalid"].([]any)) != 1 {
		t.Fatalf("JSON submit: %d %v", code, out)
	}

	code, out = do(t, "POST", url+"/v1/campaigns?campaign=inc-1&body=Hi+%7B%7Bname%7D%7D", "text/csv",
		strings.NewReader("name,phone\nAda,+14155551236\nBob,+14155551235\n"))
	if code != 202 || out["enqueued"] != 1.0 || out["alreadyQueued"] != 1.0 {
		t.Fatalf("CSV submit: %d %v", code, out)
	}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("campaign", "inc-1")
	_ = mw.WriteField("body", "API down")
	fw, _ := mw.CreateFormFile("file", "list.txt")
	_, _ = fw.Write([]byte("+14155551237\n"))
	_ = mw.Close()
	code, out = do(t, "POST", url+"/v1/campaigns", mw.FormDataContentType(), &form)
	if code != 202 || out["enqueued"] != 1.0 {
		t.Fatalf("multipart submit: %d %v", code, out)
	}

	code, out = do(t, "GET", url+"/v1/campaigns/inc-1", "", nil)
	if code != 200 || out["total"] != 4.0 || out["pending"] != 4.0 || out["state"] != "running" {
		t.Fatalf("status: %d %v", code, out)
	}
	code, out = do(t, "DELETE", url+"/v1/campaigns/inc-1", "", nil)
	if code != 200 || out["state"] != "canceled" {
		t.Fatalf("cancel: %d %v", code, out)
	}
	code, out = do(t, "POST", url+"/v1/campaigns", "application/json", strings.NewReader(
		`{"campaign":"inc-1","body":"again","recipients":["+14155551299"]}`))
	if code != 409 {
		t.Fatalf("submit to a canceled campaign: %d %v", code, out)
	}
}

func TestCampaignsAPIRefusals(t *testing.T) {
	t.Parallel()
	url := campaignServer(t)
	huge := io.MultiReader(strings.NewReader("phone\n"), strings.NewReader(strings.Repeat("+14155551234\n", httpapi.CampaignBodyMax/13+1)))
	tests := []struct {
		name, method, path, ctype string
		body                      io.Reader
		code                      int
		field                     string
	}{
		{"too large", "POST", "/v1/campaigns?campaign=c&body=x", "text/csv", huge, 413, ""},
		{"not JSON", "POST", "/v1/campaigns", "application/json", strings.NewReader("campaign=c"), 400, ""},
		{"bad campaign", "POST", "/v1/campaigns", "application/json", strings.NewReader(`{"campaign":"a b","body":"x","recipients":["+14155551234"]}`), 422, "campaign"},
		{"unknown placeholder", "POST", "/v1/campaigns?campaign=c&body=Hi+%7B%7Bnmae%7D%7D", "text/csv", strings.NewReader("name,phone\nAda,+14155551234\n"), 422, "body"},
		{"no recipients", "POST", "/v1/campaigns", "application/json", strings.NewReader(`{"campaign":"c","body":"x"}`), 422, "recipients"},
		{"form", "POST", "/v1/campaigns", "application/x-www-form-urlencoded", strings.NewReader("a=b"), 415, "Content-Type"},
		{"unknown campaign", "GET", "/v1/campaigns/nope", "", nil, 404, "id"},
		{"cancel unknown", "DELETE", "/v1/campaigns/nope", "", nil, 404, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := do(t, tt.method, url+tt.path, tt.ctype, tt.body)
			e, _ := out["error"].(map[string]any)
			if code != tt.code || e == nil || (e["field"] != nil && e["field"] != tt.field) || (tt.field != "" && e["field"] != tt.field) {
				t.Fatalf("%d %v; want %d with field %q", code, out, tt.code, tt.field)
			}
		})
	}
}
