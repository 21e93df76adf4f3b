package pool

import (
	"context"
	"time"
)

// NumberStatus is one number of the pool as `enqueue pool status` and
// GET /v1/pool show it.
type NumberStatus struct {
	Number     string    `json:"number"`
	Country    string    `json:"country"`
	Rate       string    `json:"rate"`
	NextSlot   time.Time `json:"nextSlot"`
	InRotation bool      `json:"inRotation"`
	Out        *Out      `json:"out,omitempty"` // why not, when not
}

// Status is the whole pool's state.
type Status struct {
	Numbers    []NumberStatus `json:"numbers"`
	InRotation int            `json:"inRotation"`
	StickyFor  string         `json:"stickyFor"`
	Cooldown   string         `json:"cooldown"`
}

// Status reads the pool's state: each number's rate, next free slot and
// whether (and why not) it is in rotation.
func (p *Pool) Status(ctx context.Context) (Status, error) {
	out, err := p.outs(ctx)
	if err != nil {
		return Status{}, err
	}
	at, err := p.slots.NextSlots(ctx, p.cfg.Numbers)
	if err != nil {
		return Status{}, err
	}
	st := Status{StickyFor: p.cfg.StickyFor.String(), Cooldown: p.cfg.Cooldown.String(), Numbers: []NumberStatus{}}
	for i, n := range p.cfg.Numbers {
		ns := NumberStatus{Number: n, Country: p.countries[n], NextSlot: at[i].UTC(), InRotation: true}
		if r := p.slots.SenderRate(n); r.N > 0 {
			ns.Rate = r.String()
		} else {
			ns.Rate = "unlimited"
		}
		if o, gone := out[n]; gone {
			ns.InRotation, ns.Out = false, &o
		} else {
			st.InRotation++
		}
		st.Numbers = append(st.Numbers, ns)
	}
	return st, nil
}
