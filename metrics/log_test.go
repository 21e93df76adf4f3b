package metrics_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbagenthub/twilio-worker/metrics"
)

func TestObserveLogEntries(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, fail := int64(1234), false
	metrics.ObserveLogEntries(reg, func() (int64, error) {
		if fail {
			return 0, errors.New("redis down")
		}
		return n, nil
	})
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "twilioworker_log_entries" {
		t.Fatalf("gathered %v, %v", mfs, err)
	}
	if v := mfs[0].GetMetric()[0].GetGauge().GetValue(); v != 1234 {
		t.Fatalf("twilioworker_log_entries = %v, want 1234", v)
	}
	fail = true
	if _, err := reg.Gather(); err == nil {
		t.Fatal("a failed read should be reported to the scrape, not shown as 0")
	}
}
