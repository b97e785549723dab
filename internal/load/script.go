package load

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// TPCBScript is pgbench's built-in "tpcb-like" script, verbatim
// (src/bin/pgbench/pgbench.c, PostgreSQL 15).
const TPCBScript = `\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`

// Script is a compiled pgbench-style script: \set meta-commands with
// integer expressions, and SQL commands whose :variables become bind
// parameters ($1, $2, …), as pgbench does in its extended and prepared
// modes.
type Script struct {
	Steps []Step
	// Vars are the variable names; a step refers to them by index.
	Vars []string
	// UsesScale says whether the script reads :scale.
	UsesScale bool
}

// Step is one command: a \set (Set >= 0) or an SQL statement.
type Step struct {
	Set  int  // variable index, -1 for SQL
	Expr expr // for \set
	SQL  string
	Args []int // variable indexes, in $n order
}

// Env holds the variables of one client's script.
type Env struct {
	Vals []int64
	Rand *rand.Rand
}

// Built-in variables every script can read, as in pgbench.
const (
	varScale    = 0
	varClientID = 1
)

// ParseScript compiles a script's text.
func ParseScript(text string) (*Script, error) {
	s := &Script{Vars: []string{"scale", "client_id"}}
	varIndex := func(name string) int {
		for i, v := range s.Vars {
			if v == name {
				return i
			}
		}
		s.Vars = append(s.Vars, name)
		return len(s.Vars) - 1
	}
	var sql strings.Builder
	flush := func() {
		for stmt := range strings.SplitSeq(sql.String(), ";") {
			stmt = strings.TrimSpace(stmt)
			if stmt == "" {
				continue
			}
			st := Step{Set: -1}
			var out strings.Builder
			last := 0
			for _, m := range sqlVar.FindAllStringIndex(stmt, -1) {
				if m[0] > 0 && stmt[m[0]-1] == ':' {
					continue // a cast (x::int), not a variable
				}
				idx := varIndex(stmt[m[0]+1 : m[1]])
				if idx == varScale {
					s.UsesScale = true
				}
				n := slices.Index(st.Args, idx)
				if n < 0 {
					st.Args = append(st.Args, idx)
					n = len(st.Args) - 1
				}
				out.WriteString(stmt[last:m[0]])
				out.WriteString("$" + strconv.Itoa(n+1))
				last = m[1]
			}
			out.WriteString(stmt[last:])
			st.SQL = out.String()
			s.Steps = append(s.Steps, st)
		}
		sql.Reset()
	}
	for n, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		if strings.HasPrefix(trimmed, `\`) {
			flush()
			fields := strings.Fields(trimmed)
			if fields[0] != `\set` || len(fields) < 3 {
				return nil, fmt.Errorf("line %d: only \\set name expression is supported, got %q", n+1, trimmed)
			}
			p := &exprParser{src: strings.Join(fields[2:], " "), vars: varIndex}
			e, err := p.parse()
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
			if p.usesScale {
				s.UsesScale = true
			}
			s.Steps = append(s.Steps, Step{Set: varIndex(fields[1]), Expr: e})
			continue
		}
		sql.WriteString(line)
		sql.WriteString("\n")
		// pgbench ends an SQL command at a semicolon that ends a line.
		if strings.HasSuffix(trimmed, ";") {
			flush()
		}
	}
	flush()
	hasSQL := false
	for _, st := range s.Steps {
		if st.Set < 0 {
			hasSQL = true
		}
	}
	if !hasSQL {
		return nil, fmt.Errorf("the script has no SQL command")
	}
	return s, nil
}

// sqlVar finds :name in SQL (ParseScript skips the :: of casts).
var sqlVar = regexp.MustCompile(`:[A-Za-z_][A-Za-z0-9_]*`)

// NewEnv makes a client's variables.
func (s *Script) NewEnv(scale, clientID int64, seed uint64) *Env {
	e := &Env{Vals: make([]int64, len(s.Vars)), Rand: rand.New(rand.NewPCG(seed, uint64(clientID)))}
	e.Vals[varScale] = scale
	e.Vals[varClientID] = clientID
	return e
}

// expr is a compiled integer expression.
type expr func(e *Env) int64

type exprParser struct {
	src       string
	pos       int
	vars      func(string) int
	usesScale bool
}

func (p *exprParser) parse() (expr, error) {
	e, err := p.sum()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.src) {
		return nil, fmt.Errorf("unexpected %q in expression %q", p.src[p.pos:], p.src)
	}
	return e, nil
}

func (p *exprParser) space() {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
}

func (p *exprParser) peek() byte {
	p.space()
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *exprParser) sum() (expr, error) {
	l, err := p.product()
	if err != nil {
		return nil, err
	}
	for {
		op := p.peek()
		if op != '+' && op != '-' {
			return l, nil
		}
		p.pos++
		r, err := p.product()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		if op == '+' {
			l = func(e *Env) int64 { return a(e) + b(e) }
		} else {
			l = func(e *Env) int64 { return a(e) - b(e) }
		}
	}
}

func (p *exprParser) product() (expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op := p.peek()
		if op != '*' && op != '/' && op != '%' {
			return l, nil
		}
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		switch op {
		case '*':
			l = func(e *Env) int64 { return a(e) * b(e) }
		case '/':
			l = func(e *Env) int64 {
				d := b(e)
				if d == 0 {
					return 0
				}
				return a(e) / d
			}
		default:
			l = func(e *Env) int64 {
				d := b(e)
				if d == 0 {
					return 0
				}
				return a(e) % d
			}
		}
	}
}

func (p *exprParser) unary() (expr, error) {
	if p.peek() == '-' {
		p.pos++
		v, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(e *Env) int64 { return -v(e) }, nil
	}
	return p.primary()
}

func (p *exprParser) primary() (expr, error) {
	c := p.peek()
	switch {
	case c == '(':
		p.pos++
		e, err := p.sum()
		if err != nil {
			return nil, err
		}
		if p.peek() != ')' {
			return nil, fmt.Errorf("missing ) in %q", p.src)
		}
		p.pos++
		return e, nil
	case c == ':':
		p.pos++
		name := p.word()
		if name == "" {
			return nil, fmt.Errorf("a variable needs a name in %q", p.src)
		}
		idx := p.vars(name)
		if idx == varScale {
			p.usesScale = true
		}
		return func(e *Env) int64 { return e.Vals[idx] }, nil
	case c >= '0' && c <= '9':
		start := p.pos
		for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			p.pos++
		}
		v, err := strconv.ParseInt(p.src[start:p.pos], 10, 64)
		if err != nil {
			return nil, err
		}
		return func(*Env) int64 { return v }, nil
	case unicode.IsLetter(rune(c)):
		name := p.word()
		if p.peek() != '(' {
			return nil, fmt.Errorf("unknown name %q in %q", name, p.src)
		}
		p.pos++
		var args []expr
		for p.peek() != ')' {
			a, err := p.sum()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if p.peek() == ',' {
				p.pos++
			} else if p.peek() != ')' {
				return nil, fmt.Errorf("expected , or ) in %q", p.src)
			}
		}
		p.pos++
		return function(name, args)
	}
	return nil, fmt.Errorf("cannot read expression %q at %d", p.src, p.pos)
}

func (p *exprParser) word() string {
	start := p.pos
	for p.pos < len(p.src) {
		c := rune(p.src[p.pos])
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '_' {
			break
		}
		p.pos++
	}
	return p.src[start:p.pos]
}

// function compiles the pgbench functions the tool supports.
func function(name string, args []expr) (expr, error) {
	want := map[string]int{"random": 2, "abs": 1, "least": 2, "greatest": 2}
	n, ok := want[name]
	if !ok {
		return nil, fmt.Errorf("unsupported function %s (supported: random, abs, least, greatest)", name)
	}
	if len(args) != n {
		return nil, fmt.Errorf("%s takes %d arguments, got %d", name, n, len(args))
	}
	switch name {
	case "random":
		lo, hi := args[0], args[1]
		// Uniform on [lo, hi], as pgbench's random().
		return func(e *Env) int64 {
			l, h := lo(e), hi(e)
			if h < l {
				return l
			}
			return l + e.Rand.Int64N(h-l+1)
		}, nil
	case "abs":
		a := args[0]
		return func(e *Env) int64 {
			v := a(e)
			if v < 0 {
				return -v
			}
			return v
		}, nil
	case "least":
		a, b := args[0], args[1]
		return func(e *Env) int64 { return min(a(e), b(e)) }, nil
	default:
		a, b := args[0], args[1]
		return func(e *Env) int64 { return max(a(e), b(e)) }, nil
	}
}
