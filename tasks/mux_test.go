package tasks_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestMuxRoutesExactTypesOnly(t *testing.T) {
	m := tasks.NewMux()
	ran := map[string]int{}
	for _, typ := range []string{tasks.TypeSendSMS, tasks.TypeMakeCall} {
		m.HandleFunc(typ, func(context.Context, *asynq.Task) error { ran[typ]++; return nil })
	}
	for _, typ := range []string{tasks.TypeSendSMS, tasks.TypeMakeCall} {
		if err := m.ProcessTask(context.Background(), asynq.NewTask(typ, nil)); err != nil || ran[typ] != 1 {
			t.Fatalf("%s: %v, ran %d", typ, err, ran[typ])
		}
	}
	for _, typ := range []string{"sms:sendx", "sms:send:v2", "call:make:v2", "sms", "", "c1:+14155558103"} {
		err := m.ProcessTask(context.Background(), asynq.NewTask(typ, nil))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%q: %v; want archived (SkipRetry)", typ, err)
		}
		if err != nil && typ == "c1:+14155558103" && strings.Contains(err.Error(), "+14155558103") {
			t.Errorf("the reason shows the number: %v", err)
		}
	}
	if ran[tasks.TypeSendSMS] != 1 || ran[tasks.TypeMakeCall] != 1 {
		t.Fatalf("look-alikes ran a handler: %v", ran)
	}
}
