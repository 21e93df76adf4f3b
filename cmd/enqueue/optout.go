package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/sbagenthub/twilio-worker/optout"
	"github.com/sbagenthub/twilio-worker/tasks"
)

const optoutUsage = `enqueue optout: the do-not-contact lists (tw:{optout}:optout:sms, …:voice).
enqueue consent: the marketing consents (tw:{optout}:consent:sms, …:voice), same subcommands.

Usage:
  enqueue optout add     [--channel sms|voice|all] NUMBER...   opt out (one JSON line per number)
  enqueue optout remove  [--channel sms|voice|all] NUMBER...   opt back in
  enqueue optout check   NUMBER                                {"number","optedOut":{…},"consent":{…}}
  enqueue optout history NUMBER                                the same with every recorded change
  enqueue optout list    [--channel sms|voice|all]             {"list","numbers":[…],"count"}, streamed
  enqueue optout import  [--channel sms|voice|all] FILE|-      one number per line (first CSV field);
                                                               invalid lines are counted, not fatal
  enqueue optout imports                                       the last imports, newest first

--channel defaults to sms. Numbers are E.164 or, with DEFAULT_REGION, national.
Exit status: 0 ok, 2 bad input (a number, a flag, a missing file), 1 Redis trouble.
`

// cmdList runs `enqueue optout …` (kind optout) and `enqueue consent …`.
func cmdList(kind optout.Kind, args []string, e env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.stderr, optoutUsage)
		if len(args) == 0 {
			return badInput("%s needs a subcommand: add, remove, check, history, list, import or imports", kind)
		}
		return flag.ErrHelp
	}
	sub, args := args[0], args[1:]
	fs := newFlags(string(kind)+" "+sub, e)
	channel := fs.String("channel", "sms", "sms, voice or all")
	name := fs.String("name", "", "import: a name for the record (default: the file's)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	chs, ok := optout.ParseChannels(*channel)
	if !ok {
		return badInput("channel: must be sms, voice or all")
	}
	lists := make([]optout.List, len(chs))
	for i, ch := range chs {
		lists[i] = optout.List{Kind: kind, Channel: ch}
	}
	r, err := rules(e)
	if err != nil {
		return err
	}
	numbers := func(least, most int) ([]string, error) {
		if len(pos) < least || (most > 0 && len(pos) > most) {
			return nil, badInput("number: %s %s takes %s", kind, sub, map[bool]string{true: "one NUMBER", false: "one or more NUMBERs"}[most == 1])
		}
		out := make([]string, len(pos))
		for i, p := range pos {
			n, err := tasks.ParseNumber("number", p, r.DefaultRegion)
			if err != nil {
				return nil, err
			}
			out[i] = n.String()
		}
		return out, nil
	}

	// Check the input before touching Redis.
	var nums []string
	switch sub {
	case "add", "remove":
		nums, err = numbers(1, 0)
	case "check", "history":
		nums, err = numbers(1, 1)
	case "list", "imports":
		if len(pos) > 0 {
			err = badInput("%s %s takes no arguments", kind, sub)
		}
	case "import":
		if len(pos) != 1 {
			err = badInput("file: %s import takes one FILE (or - for stdin)", kind)
		}
	default:
		err = badInput("unknown %s subcommand %q; run enqueue %s --help", kind, sub, kind)
	}
	if err != nil {
		return err
	}

	rdb, err := redisClient(e)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := optout.NewStore(rdb).WithLog(commLog(e, rdb))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()

	switch sub {
	case "add", "remove":
		for _, n := range nums {
			var changed []string
			for _, l := range lists {
				var did bool
				if sub == "add" {
					did, err = store.Put(ctx, l, n, optout.SourceCLI)
				} else {
					did, err = store.Delete(ctx, l, n, optout.SourceCLI)
				}
				if err != nil {
					return err
				}
				if did {
					changed = append(changed, string(l.Channel))
				}
			}
			st, err := store.State(ctx, n)
			if err != nil {
				return err
			}
			st.Changed = changed
			if err := printJSON(out, st); err != nil {
				return err
			}
		}
		return nil
	case "check", "history":
		st, err := store.State(ctx, nums[0])
		if err == nil && sub == "history" {
			st.History, err = store.History(ctx, nums[0])
			if st.History == nil {
				st.History = []optout.Event{}
			}
		}
		if err != nil {
			return err
		}
		return printJSON(out, st)
	case "list":
		for _, l := range lists {
			if err := streamList(ctx, out, store, l); err != nil {
				return err
			}
		}
		return nil
	case "imports":
		recs, err := store.Imports(ctx, 100)
		if err != nil {
			return err
		}
		return printJSON(out, map[string]any{"imports": recs})
	default: // import
		var in io.Reader = e.stdin
		label := "stdin"
		if pos[0] != "-" {
			f, err := os.Open(pos[0])
			if err != nil {
				return badInput("file: %v", err)
			}
			defer f.Close()
			in, label = f, pos[0]
		}
		if *name != "" {
			label = *name
		}
		rep, err := store.ImportFile(ctx, in, optout.ImportOptions{Lists: lists, Region: r.DefaultRegion, Source: optout.SourceImport, Name: label})
		if err != nil {
			if rep != nil {
				_ = printJSON(out, rep) // what was done before it stopped
			}
			return err
		}
		return printJSON(out, rep)
	}
}

// streamList writes {"list":"optout:sms","numbers":[…],"count":N} a page at
// a time, never holding the list.
func streamList(ctx context.Context, w *bufio.Writer, store *optout.Store, l optout.List) error {
	fmt.Fprintf(w, `{"list":%q,"numbers":[`, l.String())
	var count int64
	err := store.Each(ctx, l, func(n string) error {
		if count > 0 {
			w.WriteByte(',')
		}
		b, _ := json.Marshal(n)
		w.Write(b)
		count++
		return nil
	})
	if err != nil {
		w.WriteString("]}\n") // keep stdout parseable up to here; the error goes to stderr
		return err
	}
	fmt.Fprintf(w, `],"count":%d}`+"\n", count)
	return nil
}

// parseInterleaved parses flags that may come after positional arguments
// (enqueue optout add +14155551234 --channel all).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
	}
}
