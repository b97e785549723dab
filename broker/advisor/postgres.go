package advisor

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions tune what the PostgreSQL advisor looks at and how sure
// it must be. The zero value means the defaults (DefaultPostgresOptions).
type PostgresOptions struct {
	// TopStatements is how many statements, by total execution time, are
	// examined for missing indexes.
	TopStatements int
	// MinTableRows: a sequential scan matters only on a table with at
	// least this many live rows; on small tables it is the right plan.
	MinTableRows int64
	// MinGain is the fraction of the planner's cost a hypothetical index
	// must save before it is recommended (0.5: the cost at least halves).
	MinGain float64
	// MemoryLimit is the instance's memory limit in bytes (the plan's or
	// resources.memory); 0 skips the memory settings advice.
	MemoryLimit int64
}

// DefaultPostgresOptions are used for every zero field.
var DefaultPostgresOptions = PostgresOptions{TopStatements: 20, MinTableRows: 10000, MinGain: 0.5}

func (o PostgresOptions) withDefaults() PostgresOptions {
	d := DefaultPostgresOptions
	if o.TopStatements <= 0 {
		o.TopStatements = d.TopStatements
	}
	if o.MinTableRows <= 0 {
		o.MinTableRows = d.MinTableRows
	}
	if o.MinGain <= 0 || o.MinGain >= 1 {
		o.MinGain = d.MinGain
	}
	return o
}

// Statement is a row of pg_stat_statements.
type Statement struct {
	QueryID int64   `json:"queryid"`
	Query   string  `json:"query"`
	Calls   int64   `json:"calls"`
	TotalMs float64 `json:"total_ms"`
	MeanMs  float64 `json:"mean_ms"`
	Rows    int64   `json:"rows"`
}

// TableStats is a row of pg_stat_user_tables with the table's size.
type TableStats struct {
	Schema     string
	Name       string
	SeqScan    int64
	SeqTupRead int64
	IdxScan    int64
	LiveRows   int64
	Bytes      int64
}

// IndexStats describes an index from pg_index and pg_stat_user_indexes.
type IndexStats struct {
	Schema string
	Table  string
	Name   string
	// Keys are the key columns (or expressions) in order, as
	// pg_get_indexdef renders them; INCLUDE columns are not keys.
	Keys      []string
	Method    string
	Predicate string // the partial index's WHERE, "" for none
	Unique    bool
	Primary   bool
	// Constraint: the index backs a constraint (unique, primary key,
	// exclusion) and cannot be dropped on its own.
	Constraint bool
	Valid      bool
	Scans      int64
	Bytes      int64
	Def        string
}

// IndexCandidate is an index that might serve a sequential scan's filter.
type IndexCandidate struct {
	Schema  string   `json:"schema"`
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
}

// QualifiedTable is schema.table, quoted where needed.
func (c IndexCandidate) QualifiedTable() string {
	return pgx.Identifier{c.Schema, c.Table}.Sanitize()
}

// CreateIndex is the statement that creates the candidate (for HypoPG
// without CONCURRENTLY, which it does not accept).
func (c IndexCandidate) CreateIndex(concurrently bool) string {
	cols := make([]string, len(c.Columns))
	for i, col := range c.Columns {
		cols[i] = pgx.Identifier{col}.Sanitize()
	}
	conc := ""
	if concurrently {
		conc = "CONCURRENTLY "
	}
	return fmt.Sprintf("CREATE INDEX %sON %s (%s)", conc, c.QualifiedTable(), strings.Join(cols, ", "))
}

func (c IndexCandidate) key() string {
	return c.Schema + "." + c.Table + "(" + strings.Join(c.Columns, ",") + ")"
}

// IndexTrial is what HypoPG said about a candidate for one statement: the
// planner's total cost of the statement's generic plan without and with
// the hypothetical index, and whether the plan with it uses it.
type IndexTrial struct {
	Statement  Statement      `json:"statement"`
	Candidate  IndexCandidate `json:"candidate"`
	CostBefore float64        `json:"cost_before"`
	CostAfter  float64        `json:"cost_after"`
	Used       bool           `json:"used"`
}

// PostgresInputs is everything the PostgreSQL advice is computed from.
type PostgresInputs struct {
	Database   string
	Statements []Statement
	Tables     []TableStats
	Indexes    []IndexStats
	Trials     []IndexTrial
	// Settings are the memory settings in bytes (shared_buffers,
	// effective_cache_size, work_mem, maintenance_work_mem).
	Settings       map[string]int64
	MaxConnections int64
	// PeakConnections is the most connections seen while the collector
	// sampled pg_stat_database.numbackends.
	PeakConnections int64
	BlocksHit       int64
	BlocksRead      int64
	TempFiles       int64
	TempBytes       int64
	// StatsSince is when the database's statistics were last reset (zero:
	// never, so they count since the cluster was created).
	StatsSince time.Time
	// Notes are what the collector could not do.
	Notes []string
}

// explainableRE matches the statements whose plans can show a missing
// index and that EXPLAIN can plan without running them.
var explainableRE = regexp.MustCompile(`(?is)^\s*(?:/\*.*?\*/\s*)*(select|with|update|delete)\b`)

// systemRE matches statements about the catalogs (the advisor's own, a
// monitoring agent's): indexes on user tables cannot help them.
var systemRE = regexp.MustCompile(`(?i)\b(pg_catalog|information_schema|pg_stat_\w+|pg_class|pg_index|pg_settings|hypopg\w*)\b`)

// Explainable says whether a pg_stat_statements text is worth examining.
func Explainable(query string) bool {
	return explainableRE.MatchString(query) && !systemRE.MatchString(query)
}

// TopStatements are the n explainable statements with the most total
// execution time, most first.
func TopStatements(stmts []Statement, n int) []Statement {
	var out []Statement
	for _, s := range stmts {
		if Explainable(s.Query) {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TotalMs > out[j].TotalMs })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// LargeTables is the set of schema.table with at least minRows live rows.
// Whether a statement scans one sequentially is read from its plan, not
// from seq_scan: a backend reports its counters only when it goes idle,
// up to seconds later.
func LargeTables(tables []TableStats, minRows int64) map[string]bool {
	out := map[string]bool{}
	for _, t := range tables {
		if t.LiveRows >= minRows {
			out[t.Schema+"."+t.Name] = true
		}
	}
	return out
}

// planNode is the part of EXPLAIN (FORMAT JSON, VERBOSE) the advisor reads.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Schema    string     `json:"Schema"`
	Filter    string     `json:"Filter"`
	TotalCost float64    `json:"Total Cost"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}

// ParsePlan reads the output of EXPLAIN (FORMAT JSON): its top node.
func ParsePlan(explain []byte) (planNode, error) {
	var out []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(explain, &out); err != nil {
		return planNode{}, fmt.Errorf("reading the EXPLAIN output: %w", err)
	}
	if len(out) == 0 {
		return planNode{}, fmt.Errorf("the EXPLAIN output has no plan")
	}
	return out[0].Plan, nil
}

func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}

// UsesIndex says whether any node of the plan scans the named index.
// HypoPG names its indexes "<oid>btree_<table>_<column>", so the caller
// passes the name hypopg_create_index returned.
func (n planNode) UsesIndex(name string) bool {
	used := false
	n.walk(func(p planNode) {
		if p.IndexName == name {
			used = true
		}
	})
	return used
}

// IndexCandidates finds the sequential scans on large tables (large is
// keyed by schema.table) whose filter a b-tree index could serve, and
// proposes one index per scan: the columns compared for equality in the
// filter's order, then at most one column compared by range (a b-tree
// serves a range only on its last used column).
func IndexCandidates(plan planNode, large map[string]bool) []IndexCandidate {
	var out []IndexCandidate
	seen := map[string]bool{}
	plan.walk(func(p planNode) {
		if p.NodeType != "Seq Scan" || p.Filter == "" || !large[p.Schema+"."+p.Relation] {
			return
		}
		cols := FilterColumns(p.Filter)
		if len(cols) == 0 {
			return
		}
		c := IndexCandidate{Schema: p.Schema, Table: p.Relation, Columns: cols}
		if !seen[c.key()] {
			seen[c.key()] = true
			out = append(out, c)
		}
	})
	return out
}

const (
	identRE = `(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`
	// A column as EXPLAIN VERBOSE prints it: qualified by its alias,
	// maybe in parentheses with a cast: ((o.status)::text.
	columnRE = `\(*(?:` + identRE + `\.)?(` + identRE + `)\)?(?:::[A-Za-z0-9_ ."\[\]]+?)?`
	// A value the filter compares with: a parameter, a constant, a list.
	valueRE = `\(*(?:\$\d+|'(?:[^']|'')*'|-?[0-9.]+|ANY \(.*\)|NULL|true|false)(?:::[A-Za-z0-9_ ."\[\]]+)?`
)

var (
	equalityRE = regexp.MustCompile(`^` + columnRE + `\s*(?:=|IS NULL$|= ANY)\s*(?:` + valueRE + `)?`)
	rangeRE    = regexp.MustCompile(`^` + columnRE + `\s*(?:<|<=|>|>=)\s*` + valueRE)
)

// FilterColumns returns the index columns for a Seq Scan's Filter, as
// EXPLAIN VERBOSE prints it: the conjuncts "column = value" (and IS NULL,
// = ANY) first, then one "column < value" (or <=, >, >=). Conjuncts that
// are ORs, or compare expressions (lower(x) = $1), add nothing: a plain
// b-tree on columns cannot serve them.
func FilterColumns(filter string) []string {
	var eq, rng []string
	seen := map[string]bool{}
	for _, c := range conjuncts(filter) {
		if topLevelOr(c) {
			// (a = 1 OR b = 2): one b-tree cannot serve both sides.
			continue
		}
		if m := equalityRE.FindStringSubmatch(c); m != nil && rhsIsValue(c, m[0]) {
			if col := unquote(m[1]); !seen[col] {
				seen[col] = true
				eq = append(eq, col)
			}
			continue
		}
		if m := rangeRE.FindStringSubmatch(c); m != nil && rhsIsValue(c, m[0]) {
			if col := unquote(m[1]); !seen[col] {
				seen[col] = true
				rng = append(rng, col)
			}
		}
	}
	out := eq
	if len(rng) > 0 {
		out = append(out, rng[0])
	}
	if len(out) > 3 {
		// Wider indexes cost writes and space for little more selectivity.
		out = out[:3]
	}
	return out
}

// rhsIsValue: the match consumed the whole conjunct but closing parentheses,
// so the column is compared with a value, not part of a larger expression.
func rhsIsValue(c, matched string) bool {
	return strings.Trim(c[len(matched):], ") ") == ""
}

// conjuncts splits a filter on its top-level ANDs and strips each part's
// enclosing parentheses.
func conjuncts(filter string) []string {
	f := stripParens(strings.TrimSpace(filter))
	var out []string
	depth, start := 0, 0
	inQuote := false
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '\'':
			inQuote = !inQuote
		case '(':
			if !inQuote {
				depth++
			}
		case ')':
			if !inQuote {
				depth--
			}
		case ' ':
			if !inQuote && depth == 0 && strings.HasPrefix(f[i:], " AND ") {
				out = append(out, stripParens(strings.TrimSpace(f[start:i])))
				start = i + len(" AND ")
				i += len(" AND ") - 1
			}
		}
	}
	return append(out, stripParens(strings.TrimSpace(f[start:])))
}

// topLevelOr says whether s has an OR outside parentheses.
func topLevelOr(s string) bool {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ' ':
			if depth == 0 && strings.HasPrefix(s[i:], " OR ") {
				return true
			}
		}
	}
	return false
}

// stripParens removes parentheses that enclose all of s.
func stripParens(s string) string {
	for len(s) >= 2 && s[0] == '(' && s[len(s)-1] == ')' {
		depth := 0
		whole := true
		for i := 0; i < len(s); i++ {
			if s[i] == '(' {
				depth++
			} else if s[i] == ')' {
				depth--
				if depth == 0 && i < len(s)-1 {
					whole = false
					break
				}
			}
		}
		if !whole {
			break
		}
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

func unquote(ident string) string {
	if len(ident) >= 2 && ident[0] == '"' {
		return strings.ReplaceAll(ident[1:len(ident)-1], `""`, `"`)
	}
	return ident
}

// AdvisePostgres turns the collected inputs into a report.
func AdvisePostgres(in PostgresInputs, o PostgresOptions, now time.Time) Report {
	o = o.withDefaults()
	r := Report{Service: "postgresql", CheckedAt: now, Notes: append([]string(nil), in.Notes...)}
	r.Recommendations = append(r.Recommendations, missingIndexes(in, o)...)
	r.Recommendations = append(r.Recommendations, unusedIndexes(in)...)
	r.Recommendations = append(r.Recommendations, duplicateIndexes(in.Indexes)...)
	r.Recommendations = append(r.Recommendations, postgresSettings(in, o, &r.Notes)...)
	sortRecommendations(r.Recommendations)
	if !in.StatsSince.IsZero() {
		r.Notes = append(r.Notes, fmt.Sprintf("statistics count since %s: an index unused since then may still serve rare work (month-end reports)",
			in.StatsSince.UTC().Format(time.RFC3339)))
	}
	return r
}

// missingIndexes keeps the trials where HypoPG's index was used and cut
// the cost by at least MinGain, one recommendation per index, for the
// statement that spends the most time.
func missingIndexes(in PostgresInputs, o PostgresOptions) []Recommendation {
	rows := map[string]int64{}
	for _, t := range in.Tables {
		rows[t.Schema+"."+t.Name] = t.LiveRows
	}
	best := map[string]IndexTrial{}
	var keys []string
	for _, t := range in.Trials {
		if !t.Used || t.CostBefore <= 0 || t.CostAfter > t.CostBefore*(1-o.MinGain) {
			continue
		}
		if coveredByExisting(t.Candidate, in.Indexes) {
			continue
		}
		k := t.Candidate.key()
		prev, ok := best[k]
		if !ok {
			keys = append(keys, k)
		}
		if !ok || t.Statement.TotalMs > prev.Statement.TotalMs {
			best[k] = t
		}
	}
	var out []Recommendation
	for _, k := range keys {
		t := best[k]
		c := t.Candidate
		out = append(out, Recommendation{
			Service: "postgresql", Kind: KindMissingIndex, Severity: Warning,
			Target: c.Schema + "." + c.Table + " (" + strings.Join(c.Columns, ", ") + ")",
			Summary: fmt.Sprintf("a statement that ran %d times (%.0f ms in all) reads %s sequentially; HypoPG's hypothetical index on (%s) cuts its planned cost from %.0f to %.0f (%.0f%% less)",
				t.Statement.Calls, t.Statement.TotalMs, c.Schema+"."+c.Table, strings.Join(c.Columns, ", "),
				t.CostBefore, t.CostAfter, 100*(1-t.CostAfter/t.CostBefore)),
			Action: c.CreateIndex(true) + "; -- as the owner (a migration); CONCURRENTLY does not block writes",
			Query:  t.Statement.Query,
			Metrics: map[string]float64{
				"cost_before": t.CostBefore, "cost_after": t.CostAfter,
				"calls": float64(t.Statement.Calls), "total_ms": t.Statement.TotalMs, "mean_ms": t.Statement.MeanMs,
				"table_rows": float64(rows[c.Schema+"."+c.Table]),
			},
		})
	}
	return out
}

// coveredByExisting: a valid index whose leading keys are the candidate's
// columns exists already (the planner chose not to use it; a new one would
// not change that).
func coveredByExisting(c IndexCandidate, idx []IndexStats) bool {
	for _, i := range idx {
		if i.Schema == c.Schema && i.Table == c.Table && i.Valid && i.Predicate == "" &&
			(i.Method == "btree" || i.Method == "") && isPrefix(c.Columns, i.Keys) {
			return true
		}
	}
	return false
}

func isPrefix(a, b []string) bool {
	if len(a) == 0 || len(a) > len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// unusedIndexes are indexes never scanned that no constraint needs.
func unusedIndexes(in PostgresInputs) []Recommendation {
	var out []Recommendation
	for _, i := range in.Indexes {
		if i.Scans != 0 || i.Unique || i.Primary || i.Constraint || !i.Valid {
			continue
		}
		sev := Info
		if i.Bytes >= 1<<20 {
			// Big enough that its upkeep on every write is worth a look.
			sev = Warning
		}
		out = append(out, Recommendation{
			Service: "postgresql", Kind: KindUnusedIndex, Severity: sev,
			Target: i.Schema + "." + i.Name,
			Summary: fmt.Sprintf("index %s on %s (%s) has never been scanned; it takes %s and slows every write to the table",
				i.Name, i.Schema+"."+i.Table, strings.Join(i.Keys, ", "), bytesHuman(i.Bytes)),
			Action:  fmt.Sprintf("DROP INDEX CONCURRENTLY %s; -- after checking that no rare job needs it", pgx.Identifier{i.Schema, i.Name}.Sanitize()),
			Metrics: map[string]float64{"idx_scan": 0, "bytes": float64(i.Bytes)},
		})
	}
	return out
}

// duplicateIndexes finds indexes whose keys are the same as, or a leading
// prefix of, another index's on the same table with the same method and
// predicate: the longer index serves every lookup the shorter one does.
// An index a constraint needs is never the one to drop.
func duplicateIndexes(idx []IndexStats) []Recommendation {
	var out []Recommendation
	for i, a := range idx {
		if a.Unique || a.Primary || a.Constraint || !a.Valid {
			continue
		}
		for j, b := range idx {
			if i == j || a.Schema != b.Schema || a.Table != b.Table || a.Method != b.Method ||
				a.Predicate != b.Predicate || !b.Valid || !isPrefix(a.Keys, b.Keys) {
				continue
			}
			same := len(a.Keys) == len(b.Keys)
			// Of two identical plain indexes, report one: the later name.
			if same && !b.Unique && !b.Primary && !b.Constraint && a.Name < b.Name {
				continue
			}
			what := "a leading prefix of"
			if same {
				what = "the same as"
			}
			out = append(out, Recommendation{
				Service: "postgresql", Kind: KindDuplicateIndex, Severity: Warning,
				Target: a.Schema + "." + a.Name,
				Summary: fmt.Sprintf("the keys of %s (%s) are %s those of %s (%s) on %s: %s serves the same lookups, so %s only costs writes and %s",
					a.Name, strings.Join(a.Keys, ", "), what, b.Name, strings.Join(b.Keys, ", "), a.Schema+"."+a.Table,
					b.Name, a.Name, bytesHuman(a.Bytes)),
				Action:  fmt.Sprintf("DROP INDEX CONCURRENTLY %s;", pgx.Identifier{a.Schema, a.Name}.Sanitize()),
				Metrics: map[string]float64{"bytes": float64(a.Bytes), "idx_scan": float64(a.Scans)},
			})
			break
		}
	}
	return out
}

// postgresSettings compares the memory settings with the memory limit, the
// connections with max_connections, and reads the cache hit ratio.
// Tenants cannot set these PostgreSQL parameters themselves (the broker
// renders them); what a tenant can change is the instance's memory
// (resources.memory) and its plan, so the actions say that.
func postgresSettings(in PostgresInputs, o PostgresOptions, notes *[]string) []Recommendation {
	var out []Recommendation
	rec := func(kind, target string, sev Severity, summary, action string, m map[string]float64) {
		out = append(out, Recommendation{Service: "postgresql", Kind: kind, Severity: sev, Target: target, Summary: summary, Action: action, Metrics: m})
	}
	mem := o.MemoryLimit
	sb, ecs, wm := in.Settings["shared_buffers"], in.Settings["effective_cache_size"], in.Settings["work_mem"]
	if mem <= 0 {
		*notes = append(*notes, "the memory limit is unknown: shared_buffers, effective_cache_size and work_mem were not compared with it")
	} else {
		m := map[string]float64{"memory_limit": float64(mem)}
		switch {
		case sb > 0 && float64(sb) < 0.15*float64(mem):
			rec(KindPostgresSetting, "shared_buffers", Info,
				fmt.Sprintf("shared_buffers is %s, %.0f%% of the %s memory limit; about 25%% (%s) keeps more of the working set in PostgreSQL's own cache",
					bytesHuman(sb), 100*float64(sb)/float64(mem), bytesHuman(mem), bytesHuman(mem/4)),
				fmt.Sprintf("platform: set shared_buffers to %s for this memory size", bytesHuman(mem/4)), withMetric(m, "shared_buffers", sb))
		case float64(sb) > 0.4*float64(mem):
			rec(KindPostgresSetting, "shared_buffers", Warning,
				fmt.Sprintf("shared_buffers is %s, %.0f%% of the %s memory limit: little is left for connections, sorts and the page cache",
					bytesHuman(sb), 100*float64(sb)/float64(mem), bytesHuman(mem)),
				fmt.Sprintf("platform: set shared_buffers to %s, or raise resources.memory", bytesHuman(mem/4)), withMetric(m, "shared_buffers", sb))
		}
		if ecs > 0 && (float64(ecs) < 0.5*float64(mem) || ecs > mem) {
			rec(KindPostgresSetting, "effective_cache_size", Info,
				fmt.Sprintf("effective_cache_size is %s against a %s memory limit: the planner misjudges how much of an index is cached; about 75%% (%s) matches the pod",
					bytesHuman(ecs), bytesHuman(mem), bytesHuman(mem*3/4)),
				fmt.Sprintf("platform: set effective_cache_size to %s", bytesHuman(mem*3/4)), withMetric(m, "effective_cache_size", ecs))
		}
		if wm > 0 && in.MaxConnections > 0 && sb+wm*in.MaxConnections > mem {
			rec(KindPostgresSetting, "work_mem", Warning,
				fmt.Sprintf("shared_buffers %s + work_mem %s × max_connections %d is more than the %s memory limit: many concurrent sorts can get the pod killed (OOM)",
					bytesHuman(sb), bytesHuman(wm), in.MaxConnections, bytesHuman(mem)),
				"connect through the pooler (fewer server connections), or raise resources.memory", withMetric(m, "work_mem", wm))
		}
	}
	if in.TempFiles > 0 && wm > 0 && in.TempBytes/in.TempFiles > wm {
		rec(KindPostgresSetting, "work_mem", Info,
			fmt.Sprintf("%d sorts or hashes spilled %s to temporary files (%s each on average, work_mem is %s)",
				in.TempFiles, bytesHuman(in.TempBytes), bytesHuman(in.TempBytes/in.TempFiles), bytesHuman(wm)),
			"find the statements with temp_blks_written in pg_stat_statements and give them an index or a smaller result; "+
				"a larger work_mem needs more memory (resources.memory)",
			map[string]float64{"temp_files": float64(in.TempFiles), "temp_bytes": float64(in.TempBytes), "work_mem": float64(wm)})
	}
	if in.MaxConnections > 0 && in.PeakConnections > 0 {
		ratio := float64(in.PeakConnections) / float64(in.MaxConnections)
		m := map[string]float64{"peak_connections": float64(in.PeakConnections), "max_connections": float64(in.MaxConnections)}
		switch {
		case ratio >= 0.8:
			rec(KindConnections, "max_connections", Warning,
				fmt.Sprintf("%d of max_connections %d were in use (%.0f%%): new connections will soon be refused",
					in.PeakConnections, in.MaxConnections, 100*ratio),
				"connect through the pooler (the binding's host on standard and ha), make the applications' pools smaller, or move to a plan with more connections", m)
		case ratio < 0.1 && in.MaxConnections >= 100:
			rec(KindConnections, "max_connections", Info,
				fmt.Sprintf("only %d of max_connections %d were in use while sampled", in.PeakConnections, in.MaxConnections),
				"nothing to do unless this is the usual peak; then a smaller plan would do", m)
		}
	}
	if total := in.BlocksHit + in.BlocksRead; total >= 10000 {
		ratio := float64(in.BlocksHit) / float64(total)
		if ratio < 0.99 {
			sev := Info
			if ratio < 0.9 {
				sev = Warning
			}
			rec(KindCacheHitRatio, in.Database, sev,
				fmt.Sprintf("%.1f%% of the blocks read came from shared_buffers (%d read from disk or the page cache): the working set does not fit",
					100*ratio, in.BlocksRead),
				"add the indexes above first (they shrink what is read); then raise resources.memory",
				map[string]float64{"cache_hit_ratio": ratio, "blks_hit": float64(in.BlocksHit), "blks_read": float64(in.BlocksRead)})
		}
	}
	return out
}

func withMetric(m map[string]float64, k string, v int64) map[string]float64 {
	out := map[string]float64{k: float64(v)}
	for a, b := range m {
		out[a] = b
	}
	return out
}
