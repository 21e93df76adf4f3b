package httpapi

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/producer"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// CampaignBodyMax bounds the body of POST /v1/campaigns (a JSON list or a
// CSV of about 200,000 recipients); larger ones get 413. Bigger lists go
// through `enqueue bulk`, which streams.
const CampaignBodyMax = 10 << 20

// routeCampaigns registers /v1/campaigns: POST submits (JSON
// {"campaign","body","recipients":[…]}, text/csv with ?campaign=&body=, or
// multipart/form-data with fields campaign, body and a file part "file"),
// GET {id} reports progress, DELETE {id} cancels.
func (s *Server) routeCampaigns(mux *http.ServeMux) {
	if s.Redis == nil {
		return
	}
	mux.HandleFunc("POST /v1/campaigns", s.postCampaign)
	mux.HandleFunc("GET /v1/campaigns/{id}", s.getCampaign)
	mux.HandleFunc("DELETE /v1/campaigns/{id}", s.deleteCampaign)
}

func (s *Server) postCampaign(w http.ResponseWriter, r *http.Request) {
	// Read whole (it is bounded) before queueing anything: a body cut off by
	// the limit must not leave half a campaign queued.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, CampaignBodyMax))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "", "request body is over 10 MiB; use `enqueue bulk` for bigger lists")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed_request", "", "could not read the request body")
		return
	}
	p := s.producer()
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		sum campaign.Summary
		req campaign.Request
	)
	switch mt {
	case "application/json", "":
		if req, err = producer.DecodeCampaign(raw); err != nil {
			writeActionError(w, err)
			return
		}
		req.Source = tasks.SourceOperator // an operator's campaign: not metered as agent traffic
		sum, err = p.SubmitCampaign(r.Context(), req, nil)
	case "text/csv", "text/plain":
		q := r.URL.Query()
		req = campaign.Request{Campaign: q.Get("campaign"), Body: q.Get("body"), From: q.Get("from"), Class: q.Get("class")}
		req.Source = tasks.SourceOperator
		sum, err = p.SubmitCampaignFile(r.Context(), req, bytes.NewReader(raw), nil)
	case "multipart/form-data":
		var list []byte
		req, list, err = readCampaignForm(raw, params["boundary"])
		if err != nil {
			writeError(w, http.StatusBadRequest, "malformed_request", "", "multipart form: "+err.Error())
			return
		}
		if list == nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid_field", "file", "is required: the recipient list as a file part named \"file\"")
			return
		}
		req.Source = tasks.SourceOperator
		sum, err = p.SubmitCampaignFile(r.Context(), req, bytes.NewReader(list), nil)
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type",
			"must be application/json, text/csv or multipart/form-data")
		return
	}
	s.answerCampaign(w, req, sum, err)
}

// answerCampaign answers a submission: 202 with its summary, or the error.
func (s *Server) answerCampaign(w http.ResponseWriter, req campaign.Request, sum campaign.Summary, err error) {
	var fe *tasks.FieldError
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, sum)
	case errors.As(err, &fe):
		writeError(w, http.StatusUnprocessableEntity, "invalid_field", fe.Field, fe.Error())
	case errors.Is(err, campaign.ErrCanceled):
		writeError(w, http.StatusConflict, "canceled", "campaign", err.Error())
	default:
		s.logger().Error("campaign submission failed", "campaign", req.Campaign, "queued", sum.Enqueued, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "",
			"the task queue (Redis) failed part-way; what was queued stays queued, and submitting again finishes the job")
	}
}

// readCampaignForm reads the fields campaign, body, from and class and the
// file part "file" (or "recipients") of a multipart body.
func readCampaignForm(raw []byte, boundary string) (campaign.Request, []byte, error) {
	var req campaign.Request
	var list []byte
	mr := multipart.NewReader(bytes.NewReader(raw), boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return req, list, nil
		}
		if err != nil {
			return req, nil, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return req, nil, err
		}
		switch p.FormName() {
		case "file", "recipients":
			list = b
		case "campaign":
			req.Campaign = strings.TrimSpace(string(b))
		case "body":
			req.Body = string(b)
		case "from":
			req.From = string(b)
		case "class":
			req.Class = string(b)
		}
	}
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request) {
	st, err := campaign.NewStore(s.Redis).Status(r.Context(), r.PathValue("id"))
	s.writeCampaign(w, st, err)
}

func (s *Server) deleteCampaign(w http.ResponseWriter, r *http.Request) {
	res, err := campaign.NewStore(s.Redis).Cancel(r.Context(), s.Inspector, r.PathValue("id"))
	s.writeCampaign(w, res, err)
}

func (s *Server) writeCampaign(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, campaign.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "id", "no such campaign")
	default:
		s.logger().Error("campaign", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "", "Redis is unreachable; try again")
	}
}
