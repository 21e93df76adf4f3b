package campaign

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sbagenthub/twilio-worker/tasks"
)

func readRows(t *testing.T, in string) ([]string, []row) {
	t.Helper()
	src, err := newFileSource(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	for {
		r, err := src.next()
		if errors.Is(err, io.EOF) {
			return src.columns(), rows
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
}

func TestFileSource(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		columns []string
		numbers []string
		lines   []int
	}{
		{"plain list", "+14155551234\n\n  +1 415 555 1235 \r\n+14155551236", nil,
			[]string{"+14155551234", "+1 415 555 1235", "+14155551236"}, []int{1, 3, 4}},
		{"plain list whose first line has a comma", "+14155551234,x\n+14155551235\n", nil,
			[]string{"+14155551234,x", "+14155551235"}, []int{1, 2}},
		{"csv with phone column", "name,Phone\nAda,+14155551234\n\nBob,+14155551235\n", []string{"name", "Phone"},
			[]string{"+14155551234", "+14155551235"}, []int{2, 4}},
		{"csv with to column, BOM and quoted newline", "\ufeffto,note\n+14155551234,\"a\nb\"\n+14155551235,c\n", []string{"to", "note"},
			[]string{"+14155551234", "+14155551235"}, []int{2, 4}},
		{"empty", "", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols, rows := readRows(t, tt.in)
			if strings.Join(cols, "|") != strings.Join(tt.columns, "|") {
				t.Errorf("columns %q, want %q", cols, tt.columns)
			}
			if len(rows) != len(tt.numbers) {
				t.Fatalf("%d rows %+v, want %d", len(rows), rows, len(tt.numbers))
			}
			for i, r := range rows {
				if r.number != tt.numbers[i] || r.line != tt.lines[i] || r.problem != "" {
					t.Errorf("row %d = %+v, want number %q on line %d", i, r, tt.numbers[i], tt.lines[i])
				}
			}
		})
	}
}

func TestFileSourceShortCSVRowIsInvalid(t *testing.T) {
	_, rows := readRows(t, "name,phone\nAda\nBob,+14155551235\n")
	if len(rows) != 2 || rows[0].problem == "" || rows[0].line != 2 || rows[1].number != "+14155551235" {
		t.Fatalf("rows %+v", rows)
	}
}

func TestTemplate(t *testing.T) {
	cols := []string{"phone", "Name", "site"}
	tests := []struct {
		name, body string
		rec        []string
		want       string
		errField   string
	}{
		{"no placeholder", "Outage at 10:00", []string{"+1", "Ada"}, "Outage at 10:00", ""},
		{"columns, any case and spacing", "Hi {{name}}, {{ SITE }} is down", []string{"+1", " Ada ", "eu-1"}, "Hi Ada, eu-1 is down", ""},
		{"missing field is empty", "Hi {{name}}!", []string{"+1"}, "Hi !", ""},
		{"unknown column refused", "Hi {{nmae}}", nil, "", "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := parseTemplate(tt.body, cols)
			if tt.errField != "" {
				var fe *tasks.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.errField {
					t.Fatalf("err %v, want a FieldError on %s", err, tt.errField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.fill(tt.rec); got != tt.want {
				t.Fatalf("fill = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := parseTemplate("Hi {{name}}", nil); err == nil {
		t.Fatal("a placeholder without a CSV list was accepted")
	}
}
