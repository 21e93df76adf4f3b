package producer

import (
	"context"
	"fmt"
	"io"

	"github.com/sbagenthub/twilio-worker/campaign"
	"github.com/sbagenthub/twilio-worker/phone"
	"github.com/sbagenthub/twilio-worker/tasks"
)

// ActionFunc runs an action registered with Handle. a.Args holds its raw
// arguments; the answer is what the entry point returns to the client (as
// JSON). Bad input is a *tasks.FieldError or an *ActionError.
type ActionFunc func(ctx context.Context, p *Producer, a Action) (any, error)

// Handle registers fn as the action name (VAPI's hangupCall, say): Decode
// accepts it and Do runs it. A built-in name is replaced.
func (p *Producer) Handle(name string, fn ActionFunc) {
	if p.actions == nil {
		p.actions = map[string]ActionFunc{}
	}
	p.actions[name] = fn
}

// Do runs a decoded action: sendSMS and makeCall queue a task (a Result),
// getCallStatus answers a tasks.CallState, sendBulkSMS a campaign.Summary;
// a registered action answers what its ActionFunc does.
func (p *Producer) Do(ctx context.Context, a Action) (any, error) {
	if fn, ok := p.actions[a.Name]; ok {
		return fn(ctx, p, a)
	}
	// An action comes from the agent hub (HTTP, enqueue action, a voice
	// agent's tool call): the fraud guard meters it as agent traffic.
	a.SMS.Source, a.Call.Source, a.Bulk.Source = tasks.SourceAgent, tasks.SourceAgent, tasks.SourceAgent
	switch a.Name {
	case ActionSendSMS:
		return p.SendSMS(ctx, SMS{SMSPayload: a.SMS, Key: a.Key, Queue: a.Priority, SendAt: a.SendAt})
	case ActionMakeCall:
		return p.MakeCall(ctx, Call{CallPayload: a.Call, Key: a.Key, Queue: a.Priority, SendAt: a.SendAt})
	case ActionGetCallStatus:
		return p.CallStatus(ctx, a.CallSID)
	case ActionSendBulkSMS:
		return p.SubmitCampaign(ctx, a.Bulk, nil)
	}
	return nil, &ActionError{Code: CodeUnknownAction, Field: "action", Problem: fmt.Sprintf("unknown action %s", quoteShort(a.Name))}
}

// CampaignOptions are how a submission runs and reports progress.
type CampaignOptions struct {
	// Progress, when set, is called about every second while it runs.
	Progress func(campaign.Progress)
	// Workers is how many batches are in flight (campaign.WorkersDefault).
	Workers int
}

// SubmitCampaign queues req.Body to each of req.Recipients (campaign.Submit).
func (p *Producer) SubmitCampaign(ctx context.Context, req campaign.Request, o *CampaignOptions) (campaign.Summary, error) {
	return campaign.Submit(ctx, p.campaignDeps(o), req)
}

// SubmitCampaignFile queues req.Body to the recipients read from r
// (campaign.SubmitFile): one per line, or CSV.
func (p *Producer) SubmitCampaignFile(ctx context.Context, req campaign.Request, r io.Reader, o *CampaignOptions) (campaign.Summary, error) {
	return campaign.SubmitFile(ctx, p.campaignDeps(o), req, r)
}

func (p *Producer) campaignDeps(o *CampaignOptions) campaign.Deps {
	// No Client: the campaign makes its own on p.Redis, which pipelines
	// its concurrent enqueues.
	d := campaign.Deps{Redis: p.Redis, Durability: p.Durability, Rules: p.Rules}
	switch {
	case p.GuardNumber != nil:
		d.Check = p.GuardNumber
	case p.Guard != nil:
		d.Check = func(ctx context.Context, to phone.Info, source string) error {
			return p.Guard(ctx, to.Number().String(), source)
		}
	}
	if o != nil {
		d.Progress, d.Workers = o.Progress, o.Workers
	}
	return d
}

// CallStatus answers getCallStatus: the call's record, and Twilio when the
// record is missing or the call has not ended (with a Fetcher).
func (p *Producer) CallStatus(ctx context.Context, sid string) (tasks.CallState, error) {
	if p.Calls == nil {
		return tasks.CallState{}, ErrUnavailable
	}
	return tasks.LookupCall(ctx, p.Calls, p.Fetcher, sid)
}
