// Package twiliosim simulates the parts of Twilio's REST API the worker uses,
// faithfully enough that github.com/twilio/twilio-go talks to it unchanged:
// sending and listing Messages, placing and fetching Calls, fetching the
// Account, Twilio's error bodies and codes, its test-credential magic numbers,
// status callbacks signed with X-Twilio-Signature, and inbound SMS webhooks.
//
// A *Server is an http.Handler. Point a twilio-go client at it by overriding
// the base URL, e.g. with TWILIO_API_URL=http://127.0.0.1:8089 for the
// standalone cmd/twiliosim, or an httptest.Server in tests:
//
//	sim := twiliosim.New(twiliosim.Config{DeliveryDelay: 10 * time.Millisecond})
//	defer sim.Close()
//	ts := httptest.NewServer(sim)
//	defer ts.Close()
//
// Routes (base /2010-04-01/Accounts/{AccountSid}, HTTP basic auth with the
// account SID and auth token or an API key SID and secret):
//
//	POST {base}/Messages.json        create a message (201)
//	GET  {base}/Messages.json        list, newest first, with To, From, DateSent, DateSent<, DateSent>, PageSize, Page, PageToken
//	GET  {base}/Messages/{Sid}.json  fetch a message
//	POST {base}/Messages/{Sid}.json  Status=canceled: cancel a scheduled message (30409 when it is not)
//	POST {base}/Calls.json           place a call (201)
//	GET  {base}/Calls.json           list, newest first, with To, From, Status, StartTime, StartTime<, StartTime>, paging
//	GET  {base}/Calls/{Sid}.json     fetch a call (counted per call as "fetches")
//	GET  /2010-04-01/Accounts/{Sid}.json  the account
//
// Inspection and control, without authentication:
//
//	GET  /sim/messages[?to=]  every message created, oldest first
//	GET  /sim/calls[?to=]     every call created, oldest first
//	POST /sim/reset           forget all records and counters
//	GET  /sim/config          the run-time knobs
//	POST /sim/config          change the knobs given (JSON, camelCase)
//	POST /sim/inbound         deliver a signed inbound-SMS webhook to InboundURL
//	GET  /sim/clock           the simulator's clock ({"now"})
//	POST /sim/clock           {"advance":"20m"}: move the clock on, sending scheduled messages it passes
//
// Scheduled messages: ScheduleType=fixed with SendAt (RFC 3339) and a
// MessagingServiceSid creates a message with status "scheduled" that is
// sent (queued, then as any other) when SendAt comes on the simulator's
// clock, the wall clock moved on by POST /sim/clock. Twilio's rules apply:
// SendAt between 900 s and 35 days ahead (35114), SendAt required (35111),
// a Messaging Service required (35118), ScheduleType only "fixed" (35126).
// POST Messages/{Sid} with Status=canceled cancels it ("canceled"); a
// message no longer scheduled answers 30409.
//
// Messages advance by themselves, one step every DeliveryDelay: queued (or
// accepted, then queued, when sent through a Messaging Service), sending,
// sent, then delivered, undelivered or failed. Calls go queued, ringing
// (after a short moment), in-progress (after CallRing) and completed (after
// CallDuration), or end busy, no-answer or failed after ringing for the
// simulator's designated numbers. Recipient numbers with a scripted outcome:
//
//	+15005551001  call ends busy
//	+15005551002  call ends no-answer
//	+15005551003  call ends failed
//	+15005551004  message undelivered, error 30003, every time
//	+15005551005  first message undelivered 30003, later ones delivered
//	+15005551006  message failed, error 30005
//
// Twilio's test-credential magic numbers (+15005550001 and friends) are
// rejected with Twilio's codes at creation time, as Twilio does.
//
// Fault knobs make the simulator misbehave the way the real service can:
// latency, a share of 503s (alternating JSON and HTML bodies), 429 with code
// 20429 above a concurrency cap, and dropped connections after a create.
package twiliosim
