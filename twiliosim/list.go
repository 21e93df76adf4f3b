package twiliosim

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// paging is a list request's page selection.
type paging struct {
	size, page int
	token      string // PA<sid>: the page after sid; PB<sid>: the page before sid
}

func parsePaging(q url.Values) (paging, *apiError) {
	p := paging{size: PageSizeDefault, token: q.Get("PageToken")}
	if v := q.Get("PageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, badRequest(20001, "Invalid PageSize %q: want a positive integer", v)
		}
		p.size = min(n, PageSizeMax)
	}
	if v := q.Get("Page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, badRequest(20001, "Invalid Page %q: want a non-negative integer", v)
		}
		p.page = n
	}
	return p, nil
}

// envelope describes one page of a list.
type envelope struct {
	paging
	start, count int
	next, prev   string // PageToken of the next and previous pages; "" when none
}

// slice picks the page out of n matching records (newest first, sidAt giving
// the SID at an index) and returns the indices on it.
func (p paging) slice(n int, sidAt func(int) string) ([]int, envelope) {
	start := p.page * p.size
	if p.page > 0 && start/p.page != p.size { // overflow
		start = n
	}
	if len(p.token) > 2 {
		mark := p.token[2:]
		for i := range n {
			if sidAt(i) == mark {
				switch p.token[:2] {
				case "PA":
					start = i + 1
				case "PB":
					start = max(i-p.size, 0)
				}
				break
			}
		}
	}
	start = min(max(start, 0), n)
	end := min(start+p.size, n)
	env := envelope{paging: p, start: start, count: end - start}
	if end < n && end > start {
		env.next = "PA" + sidAt(end-1)
	}
	if start > 0 && start < n {
		env.prev = "PB" + sidAt(start)
	}
	idx := make([]int, 0, end-start)
	for i := start; i < end; i++ {
		idx = append(idx, i)
	}
	return idx, env
}

// json builds Twilio's list envelope around items under key.
func (e envelope) json(account, collection string, q url.Values, key string, items any) map[string]any {
	path := "/2010-04-01/Accounts/" + account + "/" + collection + ".json"
	pageURI := func(page int, token string) string {
		v := url.Values{}
		for k, vs := range q {
			if k != "Page" && k != "PageSize" && k != "PageToken" {
				v[k] = vs
			}
		}
		v.Set("PageSize", strconv.Itoa(e.size))
		v.Set("Page", strconv.Itoa(page))
		if token != "" {
			v.Set("PageToken", token)
		}
		return path + "?" + v.Encode()
	}
	var next, prev *string
	if e.next != "" {
		u := pageURI(e.page+1, e.next)
		next = &u
	}
	if e.prev != "" {
		u := pageURI(max(e.page-1, 0), e.prev)
		prev = &u
	}
	start := e.page * e.size
	end := start
	if e.count > 0 {
		end = start + e.count - 1
	}
	return map[string]any{
		key:                 items,
		"end":               end,
		"first_page_uri":    pageURI(0, ""),
		"next_page_uri":     next,
		"page":              e.page,
		"page_size":         e.size,
		"previous_page_uri": prev,
		"start":             start,
		"uri":               pageURI(e.page, e.token),
	}
}

// timeFilter matches times against Twilio's Date=, Date< and Date> filters.
// A date alone (YYYY-MM-DD) compares whole UTC days, inclusive; a full time
// (RFC 3339, as twilio-go sends, or RFC 2822) compares instants, inclusive.
type timeFilter struct {
	conds []timeCond
}

type timeCond struct {
	op    int // -1 on or before, 0 on, 1 on or after
	at    time.Time
	byDay bool
}

func (f *timeFilter) empty() bool { return len(f.conds) == 0 }

func (f *timeFilter) add(op int, v string) error {
	c := timeCond{op: op}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		c.at, c.byDay = t, true
	} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		c.at = t.UTC()
	} else if t, err := time.Parse(time.RFC1123Z, v); err == nil {
		c.at = t.UTC()
	} else {
		return errors.New("want a date YYYY-MM-DD or an RFC 3339 time")
	}
	if op == 0 && !c.byDay {
		// Date= matches a day; take the day of the time given.
		c.at, c.byDay = c.at.Truncate(24*time.Hour), true
	}
	f.conds = append(f.conds, c)
	return nil
}

func (f *timeFilter) match(t time.Time) bool {
	t = t.UTC()
	for _, c := range f.conds {
		var cmp int
		if c.byDay {
			cmp = strings.Compare(t.Format(time.DateOnly), c.at.Format(time.DateOnly))
		} else {
			cmp = t.Compare(c.at)
		}
		switch {
		case c.op == 0 && cmp != 0, c.op < 0 && cmp > 0, c.op > 0 && cmp < 0:
			return false
		}
	}
	return true
}
