package optout

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sbagenthub/twilio-worker/phone"
)

// Import tuning.
const (
	ImportBatchDefault = 2000
	// importsMax bounds the list of import records kept.
	importsMax = 1000
	// markerBuckets spreads the per-number import markers over this many
	// hashes, so each stays small enough for Redis's compact encoding.
	markerBuckets = 65536
	// invalidLinesMax is how many invalid line numbers a report lists.
	invalidLinesMax = 20
	// maxLine is the longest line read whole; longer ones are invalid.
	maxLine = 4096
)

var importsKey = key("imports")

func importKey(id string) string { return key("import", id) }

func markerKey(number string) string {
	h := fnv.New32a()
	h.Write([]byte(number))
	return key("imported", strconv.FormatUint(uint64(h.Sum32()%markerBuckets), 10))
}

// ErrNoImport is returned by Import for an unknown id.
var ErrNoImport = errors.New("no such import")

// ImportOptions says what ImportFile does.
type ImportOptions struct {
	Lists   []List // every valid number is added to each of them
	Region  string // region for national numbers, "" refuses them
	Source  Source // SourceImport when empty
	Name    string // the file's name, for the record
	Batch   int    // numbers per pipeline, ImportBatchDefault when 0
	Workers int    // goroutines normalising numbers, GOMAXPROCS when 0
}

// ImportReport is the record of one import.
type ImportReport struct {
	ID           string           `json:"importId"`
	Lists        []List           `json:"lists"`
	Source       Source           `json:"source"`
	Name         string           `json:"name,omitempty"`
	Started      time.Time        `json:"started"`
	Finished     time.Time        `json:"finished,omitzero"`
	Complete     bool             `json:"complete"`
	Lines        int64            `json:"lines"`   // lines read, blank and # comment lines included
	Valid        int64            `json:"valid"`   // numbers that parsed (duplicates counted each time)
	Invalid      int64            `json:"invalid"` // lines that did not parse
	InvalidLines []int64          `json:"invalidLines,omitempty"`
	Added        map[string]int64 `json:"added"` // per list: numbers that were not in it before
	Seconds      float64          `json:"seconds"`
}

type rawBatch struct {
	first int64 // line number of lines[0]
	lines []string
}

type parsedBatch struct {
	numbers []string
	invalid []int64
}

// ImportFile reads numbers from r, one per line (the first comma-, semicolon-
// or tab-separated field; blank lines and lines starting with # are
// skipped), normalises each with phone.Parse and adds the valid ones to every
// list of o, in pipelined batches. It streams: memory stays bounded by a few
// batches whatever the size of r. Invalid lines are counted and the first
// ones reported, not fatal. The import is recorded (one record, and per
// number one marker that History shows) before the first batch, and the
// record updated at the end; an import cut short stays recorded as not
// complete, with the numbers it did add.
func (s *Store) ImportFile(ctx context.Context, r io.Reader, o ImportOptions) (*ImportReport, error) {
	if len(o.Lists) == 0 {
		return nil, errors.New("import: no list to import into")
	}
	for _, l := range o.Lists {
		if err := l.valid(); err != nil {
			return nil, err
		}
	}
	if o.Source == "" {
		o.Source = SourceImport
	}
	if o.Batch <= 0 {
		o.Batch = ImportBatchDefault
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	started := s.now()
	rep := &ImportReport{ID: newImportID(started), Lists: o.Lists, Source: o.Source, Name: o.Name,
		Started: started.UTC(), Added: map[string]int64{}}
	for _, l := range o.Lists {
		rep.Added[l.String()] = 0
	}
	if err := s.saveImport(ctx, rep, true); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	raw := make(chan rawBatch, 2)
	parsed := make(chan parsedBatch, 2)
	var readErr error
	go func() {
		defer close(raw)
		readErr = readLines(ctx, r, o.Batch, raw, &rep.Lines)
	}()
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range raw {
				select {
				case parsed <- parseBatch(b, o.Region):
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() { wg.Wait(); close(parsed) }()

	var writeErr error
	for b := range parsed {
		if writeErr != nil {
			continue // drain
		}
		rep.Invalid += int64(len(b.invalid))
		rep.InvalidLines = keepSmallest(rep.InvalidLines, b.invalid, invalidLinesMax)
		if len(b.numbers) == 0 {
			continue
		}
		if err := s.writeBatch(ctx, rep, o.Lists, b.numbers); err != nil {
			writeErr = err
			cancel()
		}
	}
	finished := s.now()
	rep.Finished = finished.UTC()
	rep.Seconds = finished.Sub(started).Seconds()
	err := errors.Join(writeErr, readErr)
	rep.Complete = err == nil
	// Record the outcome even when the caller's context ended.
	saveCtx, cancelSave := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelSave()
	if serr := s.saveImport(saveCtx, rep, false); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return rep, fmt.Errorf("import %s: %w", rep.ID, err)
	}
	return rep, nil
}

func readLines(ctx context.Context, r io.Reader, size int, out chan<- rawBatch, lines *int64) error {
	br := bufio.NewReaderSize(r, 64<<10)
	b := rawBatch{first: 1, lines: make([]string, 0, size)}
	var n int64
	send := func() bool {
		select {
		case out <- b:
		case <-ctx.Done():
			return false
		}
		b = rawBatch{first: n + 1, lines: make([]string, 0, size)}
		return true
	}
	for {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read line %d: %w", n+1, err)
		}
		n++
		b.lines = append(b.lines, line)
		if len(b.lines) == size && !send() {
			return ctx.Err()
		}
	}
	*lines = n
	if len(b.lines) > 0 && !send() {
		return ctx.Err()
	}
	return nil
}

// readLine returns the next line without its end; a line longer than
// maxLine comes back as "\x00" so that it is counted invalid.
func readLine(br *bufio.Reader) (string, error) {
	var long bool
	var out string
	for {
		frag, isPrefix, err := br.ReadLine()
		if err != nil {
			if err == io.EOF && (long || out != "") {
				return out, nil
			}
			return "", err
		}
		if !long {
			if len(out)+len(frag) > maxLine {
				long, out = true, "\x00"
			} else {
				out += string(frag)
			}
		}
		if !isPrefix {
			return out, nil
		}
	}
}

func parseBatch(b rawBatch, region string) parsedBatch {
	p := parsedBatch{numbers: make([]string, 0, len(b.lines))}
	for i, line := range b.lines {
		field := strings.TrimSpace(line)
		if field == "" || field[0] == '#' {
			continue
		}
		if j := strings.IndexAny(field, ",;\t"); j >= 0 {
			field = field[:j]
		}
		field = strings.Trim(field, "\"' ")
		n, err := phone.Parse(field, region)
		if err != nil {
			p.invalid = append(p.invalid, b.first+int64(i))
			continue
		}
		p.numbers = append(p.numbers, n.String())
	}
	return p
}

func (s *Store) writeBatch(ctx context.Context, rep *ImportReport, lists []List, numbers []string) error {
	members := make([]any, len(numbers))
	for i, n := range numbers {
		members[i] = n
	}
	added := make([]*redis.IntCmd, len(lists))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, l := range lists {
			added[i] = p.SAdd(ctx, l.Key(), members...)
		}
		for _, n := range numbers {
			p.HSet(ctx, markerKey(n), n, rep.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	for i, l := range lists {
		rep.Added[l.String()] += added[i].Val()
	}
	rep.Valid += int64(len(numbers))
	return nil
}

func (s *Store) saveImport(ctx context.Context, rep *ImportReport, first bool) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, importKey(rep.ID), b, 0)
		if first {
			p.LPush(ctx, importsKey, rep.ID)
			p.LTrim(ctx, importsKey, 0, importsMax-1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record import: %w", err)
	}
	return nil
}

// Import returns the record of one import.
func (s *Store) Import(ctx context.Context, id string) (*ImportReport, error) {
	b, err := s.rdb.Get(ctx, importKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %q", ErrNoImport, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read import: %w", err)
	}
	var rep ImportReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("import %q: %w", id, err)
	}
	return &rep, nil
}

// Imports returns the records of the last n imports, newest first.
func (s *Store) Imports(ctx context.Context, n int) ([]*ImportReport, error) {
	ids, err := s.rdb.LRange(ctx, importsKey, 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list imports: %w", err)
	}
	out := make([]*ImportReport, 0, len(ids))
	for _, id := range ids {
		rep, err := s.Import(ctx, id)
		if errors.Is(err, ErrNoImport) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rep)
	}
	return out, nil
}

func newImportID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "imp-" + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// keepSmallest merges more into have and keeps the n smallest, sorted.
func keepSmallest(have, more []int64, n int) []int64 {
	if len(more) == 0 {
		return have
	}
	have = append(have, more...)
	slices.Sort(have)
	if len(have) > n {
		have = have[:n]
	}
	return have
}
