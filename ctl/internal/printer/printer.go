package printer

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Formats accepted by -o.
const (
	Table = "table"
	JSON  = "json"
	YAML  = "yaml"
)

// Formats lists the accepted -o values (for completion and errors).
var Formats = []string{Table, JSON, YAML}

// ValidFormat returns an error naming the accepted values when f is not one.
func ValidFormat(f string) error {
	for _, ok := range Formats {
		if f == ok {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: use -o %s", f, strings.Join(Formats, "|"))
}

// Rows is a table: a header and rows of the same width.
type Rows struct {
	Header []string
	Rows   [][]string
}

// Print writes rows as a table, or raw as JSON/YAML. raw may be a
// json.RawMessage, which is passed through (indented for JSON).
func Print(w io.Writer, format string, rows Rows, raw any) error {
	switch format {
	case Table, "":
		return WriteTable(w, rows)
	case JSON:
		b, err := toJSON(raw)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case YAML:
		b, err := toJSON(raw)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return fmt.Errorf("convert output to YAML: %w", err)
		}
		_, err = w.Write(y)
		return err
	}
	return ValidFormat(format)
}

func toJSON(raw any) ([]byte, error) {
	if r, ok := raw.(json.RawMessage); ok {
		if len(r) == 0 {
			r = json.RawMessage("null")
		}
		var v any
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("output is not valid JSON: %w", err)
		}
		raw = v
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode output as JSON: %w", err)
	}
	return b, nil
}

// WriteTable writes rows aligned in columns separated by at least three spaces
// (like kubectl and istioctl). Empty cells print as "-".
func WriteTable(w io.Writer, rows Rows) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if c == "" {
				c = "-"
			}
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprint(tw, "\n")
	}
	line(rows.Header)
	for _, r := range rows.Rows {
		line(r)
	}
	return tw.Flush()
}
