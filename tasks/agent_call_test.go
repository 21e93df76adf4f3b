package tasks_test

import (
	"errors"
	"testing"

	"github.com/sbagenthub/twilio-worker/tasks"
)

func TestAssistantCallPayload(t *testing.T) {
	withDefault := tasks.Rules{AssistantID: "asst-default"}
	tests := []struct {
		name  string
		p     tasks.CallPayload
		r     tasks.Rules
		field string // "" when valid
		want  string // AssistantID after Normalize
	}{
		{"assistant", tasks.CallPayload{To: "+14155550100", AssistantID: "asst-1"}, tasks.Rules{}, "", "asst-1"},
		{"agent takes the default", tasks.CallPayload{To: "+14155550100", Agent: true}, withDefault, "", "asst-default"},
		{"assistantId wins over agent", tasks.CallPayload{To: "+14155550100", Agent: true, AssistantID: "asst-1"}, withDefault, "", "asst-1"},
		{"agent without a default", tasks.CallPayload{To: "+14155550100", Agent: true}, tasks.Rules{}, "agent", ""},
		{"bad assistant id", tasks.CallPayload{To: "+14155550100", AssistantID: "a b"}, tasks.Rules{}, "assistantId", ""},
		{"say with an assistant", tasks.CallPayload{To: "+14155550100", AssistantID: "a", Say: "hi"}, tasks.Rules{}, "say", ""},
		{"from with an assistant", tasks.CallPayload{To: "+14155550100", AssistantID: "a", From: "+15005550006"}, tasks.Rules{}, "from", ""},
		{"record with an assistant", tasks.CallPayload{To: "+14155550100", AssistantID: "a", Record: true}, tasks.Rules{}, "record", ""},
		{"bad to", tasks.CallPayload{To: "+1555", AssistantID: "a"}, tasks.Rules{}, "to", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.p.Normalize(tt.r)
			if tt.field != "" {
				var fe *tasks.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("Normalize = %v; want an error naming %s", err, tt.field)
				}
				return
			}
			if err != nil || p.AssistantID != tt.want || p.Agent {
				t.Fatalf("Normalize = %+v, %v; want assistant %s", p, err, tt.want)
			}
		})
	}
}
