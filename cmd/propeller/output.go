package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"
)

const outputHelp = "output format: table, wide, name, json, yaml or jsonpath=TEMPLATE (kubectl's JSONPath over the JSON fields, e.g. jsonpath={.items[*].id})"

// view is one command's result as every output format sees it.
type view struct {
	// obj is what json, yaml and jsonpath print (the REST body).
	obj any
	// names are what -o name prints, one a line: the ids.
	names   []string
	columns []string
	// wide are the extra columns of -o wide.
	wide []string
	// rows have len(columns)+len(wide) cells.
	rows [][]string
	// detail is printed under the table (table and wide only).
	detail func(io.Writer)
}

// printer writes views in the format of -o.
type printer struct {
	format    string
	jp        *jsonpath.JSONPath
	noHeaders bool
}

// newPrinter checks -o before anything is sent, so a typo is a usage
// error and not a half-done command.
func newPrinter(output string, noHeaders bool) (*printer, error) {
	p := &printer{format: output, noHeaders: noHeaders}
	switch output {
	case "", "table":
		p.format = "table"
	case "wide", "name", "json", "yaml":
	default:
		tmpl, ok := strings.CutPrefix(output, "jsonpath=")
		if !ok {
			return nil, usageErrorf("--output %q: want table, wide, name, json, yaml or jsonpath=TEMPLATE", output)
		}
		// Missing keys print nothing, as in kubectl: JSON leaves empty
		// fields out, so {.reason} of a task without one is not an error.
		p.format, p.jp = "jsonpath", jsonpath.New("output").AllowMissingKeys(true)
		if err := p.jp.Parse(tmpl); err != nil {
			return nil, usageErrorf("--output jsonpath: %v", err)
		}
	}
	return p, nil
}

func (p *printer) print(w io.Writer, v view) error {
	switch p.format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v.obj)
	case "yaml":
		b, err := yaml.Marshal(v.obj)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "jsonpath":
		data, err := jsonTree(v.obj)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := p.jp.Execute(&buf, data); err != nil {
			return fmt.Errorf("--output jsonpath: %w", err)
		}
		if buf.Len() > 0 && !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
			buf.WriteByte('\n')
		}
		_, err = w.Write(buf.Bytes())
		return err
	case "name":
		for _, n := range v.names {
			if _, err := fmt.Fprintln(w, n); err != nil {
				return err
			}
		}
		return nil
	}
	cols := len(v.columns)
	if p.format == "wide" {
		cols += len(v.wide)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if !p.noHeaders && cols > 0 {
		fmt.Fprintln(tw, strings.Join(append(append([]string{}, v.columns...), v.wide...)[:cols], "\t"))
	}
	for _, r := range v.rows {
		fmt.Fprintln(tw, strings.Join(r[:min(cols, len(r))], "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if v.detail != nil {
		v.detail(w)
	}
	return nil
}

// jsonTree is v as JSON decodes it, which is what JSONPath walks; whole
// numbers become int64 so 134217728 prints as that, not 1.34217728e+08.
func jsonTree(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return numbers(out), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// age is how long ago t was, as kubectl shows it: 45s, 12m, 5h, 3d.
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// dash shows an empty cell as "-", so columns stay aligned for awk.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
