// Package dashboards writes Strata's Grafana dashboards: each is described
// here in a few lines per panel (dashboards.go) and rendered into the JSON
// Grafana reads, which the broker chart ships as ConfigMaps for Grafana's
// dashboard sidecar (charts/strata-broker/dashboards, docs/dashboards.md).
// The panels' queries are written from the metrics Strata's instances and
// broker really expose; no upstream dashboard is copied.
//
// Regenerate the JSON after changing a dashboard:
//
//	go test ./charts -run TestDashboardFilesAreGenerated -update-dashboards
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/prometheus/prometheus/promql/parser"
)

// Dashboard is one Grafana dashboard.
type Dashboard struct {
	// File is the JSON file's name under charts/strata-broker/dashboards
	// (and the ConfigMap's key).
	File        string
	UID         string
	Title       string
	Description string
	// Namespace and Instance are the dashboard's "namespace" and
	// "instance" variables; Instance may be nil.
	Namespace Variable
	Instance  *Variable
	// Inputs are text box variables (prices) the queries use.
	Inputs []Input
	Panels []Panel
}

// Variable is a query variable: label values of a series selector.
type Variable struct {
	Label string
	// Selector and LabelName make Grafana's label_values(Selector,
	// LabelName).
	Selector  string
	LabelName string
	// Regex keeps the first capture group of each value (Grafana's
	// variable regex), e.g. the instance's name out of a job label.
	Regex string
	// Multi allows several values and "All".
	Multi       bool
	Description string
}

// Query is the variable's Grafana query.
func (v Variable) Query() string { return "label_values(" + v.Selector + ", " + v.LabelName + ")" }

// Input is a text box variable with a default value.
type Input struct{ Name, Label, Default, Description string }

// Panel is a panel, or a row header when Row is set.
type Panel struct {
	Row         string
	Title       string
	Description string
	// Type is a Grafana panel type: timeseries (the default), stat or
	// table.
	Type string
	// Unit is Grafana's unit id (bytes, s, percentunit, ops, ...).
	Unit    string
	Width   int // of 24 columns; 12 by default, 6 for a stat
	Height  int // 8 by default, 4 for a stat
	Targets []Target
}

// Target is one query of a panel.
type Target struct {
	Expr   string
	Legend string
	// Instant asks for the last value only (tables).
	Instant bool
}

// The JSON model, in the field order Grafana writes (stable output).
type (
	jsonDashboard struct {
		UID           string      `json:"uid"`
		Title         string      `json:"title"`
		Description   string      `json:"description"`
		Tags          []string    `json:"tags"`
		Editable      bool        `json:"editable"`
		SchemaVersion int         `json:"schemaVersion"`
		Time          jsonTime    `json:"time"`
		Refresh       string      `json:"refresh"`
		Templating    jsonVarList `json:"templating"`
		Panels        []jsonPanel `json:"panels"`
	}
	jsonTime struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	jsonVarList struct {
		List []jsonVar `json:"list"`
	}
	jsonVar struct {
		Name        string          `json:"name"`
		Label       string          `json:"label"`
		Description string          `json:"description,omitempty"`
		Type        string          `json:"type"`
		Datasource  *jsonDatasource `json:"datasource,omitempty"`
		Query       any             `json:"query"`
		Definition  string          `json:"definition,omitempty"`
		Regex       string          `json:"regex,omitempty"`
		Refresh     int             `json:"refresh,omitempty"`
		Sort        int             `json:"sort,omitempty"`
		Multi       bool            `json:"multi"`
		IncludeAll  bool            `json:"includeAll"`
		Current     map[string]any  `json:"current"`
		Hide        int             `json:"hide"`
	}
	jsonDatasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	jsonPanel struct {
		ID          int             `json:"id"`
		Type        string          `json:"type"`
		Title       string          `json:"title"`
		Description string          `json:"description,omitempty"`
		GridPos     jsonGridPos     `json:"gridPos"`
		Datasource  *jsonDatasource `json:"datasource,omitempty"`
		FieldConfig *jsonFieldCfg   `json:"fieldConfig,omitempty"`
		Options     map[string]any  `json:"options,omitempty"`
		Collapsed   *bool           `json:"collapsed,omitempty"`
		Panels      []jsonPanel     `json:"panels,omitempty"`
		Targets     []jsonTarget    `json:"targets,omitempty"`
	}
	jsonGridPos struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	}
	jsonFieldCfg struct {
		Defaults  map[string]any `json:"defaults"`
		Overrides []any          `json:"overrides"`
	}
	jsonTarget struct {
		RefID        string          `json:"refId"`
		Datasource   *jsonDatasource `json:"datasource,omitempty"`
		Expr         string          `json:"expr"`
		LegendFormat string          `json:"legendFormat,omitempty"`
		Instant      bool            `json:"instant,omitempty"`
		Range        bool            `json:"range"`
		Format       string          `json:"format,omitempty"`
	}
)

// datasource is the panels' and variables' data source: the dashboard's
// "datasource" variable.
var datasource = &jsonDatasource{Type: "prometheus", UID: "${datasource}"}

// JSON renders the dashboard as Grafana's JSON model, indented, with a
// final newline. Panels flow left to right in rows of 24 columns.
func (d Dashboard) JSON() ([]byte, error) {
	out := jsonDashboard{
		UID: d.UID, Title: d.Title, Description: d.Description,
		Tags: []string{"strata"}, Editable: true, SchemaVersion: 39,
		Time: jsonTime{From: "now-6h", To: "now"}, Refresh: "1m",
	}
	vars := []jsonVar{{
		Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus",
		Current: map[string]any{},
	}}
	for _, v := range []*Variable{&d.Namespace, d.Instance} {
		if v == nil {
			continue
		}
		name := "namespace"
		if v == d.Instance {
			name = "instance"
		}
		vars = append(vars, jsonVar{
			Name: name, Label: v.Label, Description: v.Description, Type: "query", Datasource: datasource,
			// A plain string: Grafana reads it as a classic query.
			Query:      v.Query(),
			Definition: v.Query(), Regex: v.Regex, Refresh: 2, Sort: 1,
			Multi: v.Multi, IncludeAll: v.Multi, Current: map[string]any{},
		})
	}
	for _, in := range d.Inputs {
		vars = append(vars, jsonVar{
			Name: in.Name, Label: in.Label, Description: in.Description, Type: "textbox", Query: in.Default,
			Current: map[string]any{"text": in.Default, "value": in.Default},
		})
	}
	out.Templating.List = vars

	x, y, rowHeight, id := 0, 0, 0, 0
	for _, p := range d.Panels {
		id++
		if p.Row != "" {
			if x > 0 {
				x, y = 0, y+rowHeight
			}
			collapsed := false
			out.Panels = append(out.Panels, jsonPanel{ID: id, Type: "row", Title: p.Row, Collapsed: &collapsed, Panels: []jsonPanel{},
				GridPos: jsonGridPos{H: 1, W: 24, X: 0, Y: y}})
			y++
			rowHeight = 0
			continue
		}
		typ, w, h := p.Type, p.Width, p.Height
		if typ == "" {
			typ = "timeseries"
		}
		if w == 0 {
			w = 12
			if typ == "stat" {
				w = 6
			}
		}
		if h == 0 {
			h = 8
			if typ == "stat" {
				h = 4
			}
		}
		if x+w > 24 {
			x, y, rowHeight = 0, y+rowHeight, 0
		}
		defaults := map[string]any{}
		if p.Unit != "" {
			defaults["unit"] = p.Unit
		}
		jp := jsonPanel{
			ID: id, Type: typ, Title: p.Title, Description: p.Description,
			GridPos: jsonGridPos{H: h, W: w, X: x, Y: y}, Datasource: datasource,
			FieldConfig: &jsonFieldCfg{Defaults: defaults, Overrides: []any{}},
		}
		switch typ {
		case "stat":
			jp.Options = map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}, "colorMode": "value", "graphMode": "area"}
		case "timeseries":
			jp.Options = map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true}, "tooltip": map[string]any{"mode": "multi", "sort": "desc"}}
		}
		for i, t := range p.Targets {
			jt := jsonTarget{RefID: string(rune('A' + i)), Expr: t.Expr, LegendFormat: t.Legend, Range: !t.Instant}
			if t.Instant {
				jt.Instant, jt.Format = true, "table"
			}
			jp.Targets = append(jp.Targets, jt)
		}
		out.Panels = append(out.Panels, jp)
		x += w
		if h > rowHeight {
			rowHeight = h
		}
		if x >= 24 {
			x, y, rowHeight = 0, y+rowHeight, 0
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Model is what the checks read of a dashboard's JSON: its variables and
// its panels' queries.
type Model struct {
	UID       string
	Title     string
	Variables []ModelVariable
	Panels    []ModelPanel
}

// ModelVariable is a dashboard variable. Query is a query variable's
// label_values(...) or a text box's default value.
type ModelVariable struct {
	Name, Type, Query, Regex, Datasource string
	Multi                                bool
}

// ModelPanel is a panel (rows are left out) and its queries.
type ModelPanel struct {
	Title, Type, Datasource string
	Exprs                   []string
	// TargetDatasources are the targets' own data sources ("" when a
	// target inherits the panel's).
	TargetDatasources []string
}

// ReadModel decodes a dashboard's Grafana JSON.
func ReadModel(b []byte) (Model, error) {
	var d jsonDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return Model{}, err
	}
	m := Model{UID: d.UID, Title: d.Title}
	for _, v := range d.Templating.List {
		mv := ModelVariable{Name: v.Name, Type: v.Type, Regex: v.Regex, Multi: v.Multi}
		if v.Datasource != nil {
			mv.Datasource = v.Datasource.UID
		}
		switch q := v.Query.(type) {
		case string:
			mv.Query = q
		case map[string]any:
			mv.Query, _ = q["query"].(string)
		}
		m.Variables = append(m.Variables, mv)
	}
	var walk func([]jsonPanel)
	walk = func(panels []jsonPanel) {
		for _, p := range panels {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			mp := ModelPanel{Title: p.Title, Type: p.Type}
			if p.Datasource != nil {
				mp.Datasource = p.Datasource.UID
			}
			for _, t := range p.Targets {
				mp.Exprs = append(mp.Exprs, t.Expr)
				uid := ""
				if t.Datasource != nil {
					uid = t.Datasource.UID
				}
				mp.TargetDatasources = append(mp.TargetDatasources, uid)
			}
			m.Panels = append(m.Panels, mp)
		}
	}
	walk(d.Panels)
	return m, nil
}

// Variable returns the dashboard's variable of that name.
func (m Model) Variable(name string) (ModelVariable, bool) {
	for _, v := range m.Variables {
		if v.Name == name {
			return v, true
		}
	}
	return ModelVariable{}, false
}

var (
	variableRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)`)
	labelValues = regexp.MustCompile(`^label_values\((.*), *(\w+)\)$`)
)

// Substitute replaces Grafana's variable references ($name, ${name},
// ${name:format}, [[name]]) with values, as Grafana would before sending
// a query; a reference without a value is an error.
func Substitute(expr string, values map[string]string) (string, error) {
	var missing []string
	out := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
			return ref
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for %v in %s", missing, expr)
	}
	return out, nil
}

// References says which variables an expression uses.
func References(expr string) map[string]bool {
	refs := map[string]bool{}
	for _, m := range variableRef.FindAllStringSubmatch(expr, -1) {
		refs[m[1]+m[2]+m[3]] = true
	}
	return refs
}

// LabelValues splits a query variable's label_values(selector, label).
func LabelValues(query string) (selector, label string, ok bool) {
	m := labelValues.FindStringSubmatch(query)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// MetricNames are the metric names an expression selects, once its
// variables are substituted with values (Prometheus's own parser).
func MetricNames(expr string, values map[string]string) ([]string, error) {
	expanded, err := Substitute(expr, values)
	if err != nil {
		return nil, err
	}
	node, err := parser.ParseExpr(expanded)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", expanded, err)
	}
	seen := map[string]bool{}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
		}
		if name != "" && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		return nil
	})
	return names, nil
}
