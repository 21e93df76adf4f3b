package campaign

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/sbagenthub/twilio-worker/tasks"
)

// MaxLineBytes bounds one line of a plain recipient list.
const MaxLineBytes = 64 << 10

// row is one recipient of the input.
type row struct {
	line    int
	number  string
	record  []string // CSV fields, for the body's placeholders
	problem string   // the row is invalid for this reason
}

// source yields the input's rows; next returns io.EOF after the last.
type source interface {
	columns() []string // CSV header; nil for a plain list
	next() (row, error)
}

// sliceSource is a list of numbers (the JSON API's recipients).
type sliceSource struct {
	numbers []string
	i       int
}

func (s *sliceSource) columns() []string { return nil }

func (s *sliceSource) next() (row, error) {
	if s.i >= len(s.numbers) {
		return row{}, io.EOF
	}
	s.i++
	return row{line: s.i, number: s.numbers[s.i-1]}, nil
}

// newFileSource reads recipients one per line, or CSV when the first line
// is a header with a "phone" or "to" column (case-insensitive): the other
// columns then fill the body's {{column}} placeholders. It streams r.
func newFileSource(r io.Reader) (source, error) {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	first, err := br.ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read recipients: %w", err)
	}
	first = bytes.Clone(first)
	in := io.MultiReader(bytes.NewReader(first), br)
	header, phoneCol := csvHeader(first)
	if phoneCol < 0 {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
		return &lineSource{sc: sc}, nil
	}
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil { // the header
		return nil, fmt.Errorf("read recipients: %w", err)
	}
	return &csvSource{r: cr, header: header, phone: phoneCol}, nil
}

// csvHeader parses line as a CSV header and returns it with the index of
// its phone (or to) column; -1 when it has none.
func csvHeader(line []byte) ([]string, int) {
	line = bytes.TrimPrefix(line, []byte("\ufeff")) // a spreadsheet's byte-order mark
	rec, err := csv.NewReader(bytes.NewReader(line)).Read()
	if err != nil {
		return nil, -1
	}
	phoneCol := -1
	for i, f := range rec {
		rec[i] = strings.TrimSpace(f)
		if phoneCol < 0 && (strings.EqualFold(rec[i], "phone") || strings.EqualFold(rec[i], "to")) {
			phoneCol = i
		}
	}
	return rec, phoneCol
}

type lineSource struct {
	sc   *bufio.Scanner
	line int
}

func (s *lineSource) columns() []string { return nil }

func (s *lineSource) next() (row, error) {
	for s.sc.Scan() {
		s.line++
		text := strings.TrimSpace(strings.TrimPrefix(s.sc.Text(), "\ufeff"))
		if text == "" {
			continue
		}
		return row{line: s.line, number: text}, nil
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return row{}, &tasks.FieldError{Field: "recipients", Problem: fmt.Sprintf("line %d is longer than %d bytes", s.line+1, MaxLineBytes)}
		}
		return row{}, fmt.Errorf("read recipients: %w", err)
	}
	return row{}, io.EOF
}

type csvSource struct {
	r      *csv.Reader
	header []string
	phone  int
}

func (s *csvSource) columns() []string { return s.header }

func (s *csvSource) next() (row, error) {
	for {
		rec, err := s.r.Read()
		if errors.Is(err, io.EOF) {
			return row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return row{line: pe.StartLine, problem: "malformed CSV: " + pe.Err.Error()}, nil
		}
		if err != nil {
			return row{}, fmt.Errorf("read recipients: %w", err)
		}
		line, _ := s.r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if s.phone >= len(rec) {
			return row{line: line, problem: "no value in the " + s.header[s.phone] + " column"}, nil
		}
		return row{line: line, number: rec[s.phone], record: append([]string(nil), rec...)}, nil
	}
}

// template is a body with {{column}} placeholders resolved to CSV columns.
type template struct {
	literal []string // len(literal) == len(column)+1
	column  []int
}

var placeholder = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)

// parseTemplate resolves body's placeholders against columns (matched
// without regard to case). A placeholder without a column is an error: a
// typo must not reach 100,000 phones as "Hi {{nmae}}".
func parseTemplate(body string, columns []string) (template, error) {
	var t template
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(body, -1) {
		name := body[m[2]:m[3]]
		col := -1
		for i, c := range columns {
			if strings.EqualFold(c, name) {
				col = i
				break
			}
		}
		if col < 0 {
			if columns == nil {
				return t, &tasks.FieldError{Field: "body", Problem: fmt.Sprintf("placeholder {{%s}} needs a CSV recipient list with a %q column", name, name)}
			}
			return t, &tasks.FieldError{Field: "body", Problem: fmt.Sprintf("placeholder {{%s}} has no column of that name (columns: %s)", name, strings.Join(columns, ", "))}
		}
		t.literal = append(t.literal, body[last:m[0]])
		t.column = append(t.column, col)
		last = m[1]
	}
	t.literal = append(t.literal, body[last:])
	return t, nil
}

// personal reports whether the body differs from row to row.
func (t template) personal() bool { return len(t.column) > 0 }

// fill returns the body for one CSV record; a missing field is empty.
func (t template) fill(rec []string) string {
	if !t.personal() {
		return t.literal[0]
	}
	var b strings.Builder
	for i, col := range t.column {
		b.WriteString(t.literal[i])
		if col < len(rec) {
			b.WriteString(strings.TrimSpace(rec[col]))
		}
	}
	b.WriteString(t.literal[len(t.literal)-1])
	return b.String()
}
