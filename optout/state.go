package optout

import "context"

// State is a number's standing on every channel, as GET /v1/optouts/{number}
// and `enqueue optout check` show it.
type State struct {
	Number   string          `json:"number"`
	OptedOut map[string]bool `json:"optedOut"` // per channel
	Consent  map[string]bool `json:"consent"`  // marketing consent per channel
	Changed  []string        `json:"changed,omitempty"`
	History  []Event         `json:"history,omitempty"`
}

// State reads number's opt-outs and consents on every channel.
func (s *Store) State(ctx context.Context, number string) (State, error) {
	st := State{Number: number, OptedOut: map[string]bool{}, Consent: map[string]bool{}}
	for _, ch := range Channels {
		out, err := s.OptedOut(ctx, ch, number)
		if err != nil {
			return st, err
		}
		ok, err := s.HasConsent(ctx, ch, number)
		if err != nil {
			return st, err
		}
		st.OptedOut[string(ch)], st.Consent[string(ch)] = out, ok
	}
	return st, nil
}

// ParseChannels reads a --channel or ?channel= value: sms (also ""), voice or all.
func ParseChannels(s string) ([]Channel, bool) {
	switch s {
	case "", "sms":
		return []Channel{SMS}, true
	case "voice":
		return []Channel{Voice}, true
	case "all":
		return Channels, true
	}
	return nil, false
}
