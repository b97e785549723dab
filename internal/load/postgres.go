package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresOptions mirror pgbench's options.
type PostgresOptions struct {
	// Clients is pgbench's -c: concurrent sessions, one connection each.
	Clients int
	// Script is the transaction each client runs in a loop; TPCBScript
	// unless -f gave another.
	Script string
	// ScriptName names it in the summary.
	ScriptName string
	// Scale is :scale; 0 reads it from pgbench_branches, as pgbench does.
	Scale int64
	// Mode is pgbench's -M: simple, extended or prepared.
	Mode string
	Limits
}

// PostgresConfig is a connection to the binding's database with TLS
// verified against the binding's CA (verify-full whatever the binding's
// sslmode says: the tool never connects without verification).
// hostaddr, when not empty, is the address to connect to instead of
// resolving the host (libpq's hostaddr): the certificate is still verified
// for the binding's host name.
func PostgresConfig(b Binding, hostaddr string) (*pgx.ConnConfig, error) {
	if err := b.checkType("postgresql"); err != nil {
		return nil, err
	}
	v, err := b.Values("host", "port", "database", "username", "password")
	if err != nil {
		return nil, err
	}
	host, port, db, user, password := v[0], v[1], v[2], v[3], v[4]
	if mode := b["sslmode"]; mode != "" && mode != "verify-full" && mode != "verify-ca" {
		return nil, fmt.Errorf("the binding's sslmode is %q: the load tool needs verify-full (or verify-ca) and a CA", mode)
	}
	// sslmode=disable only stops pgx from building a TLS configuration of
	// its own from the string; the one set below (the binding's CA, the
	// host's name checked) is used for every connection, with no
	// plaintext fallback.
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=%s sslmode=disable connect_timeout=10 application_name=strata-load",
		quoteConn(host), quoteConn(port), quoteConn(db)))
	if err != nil {
		return nil, fmt.Errorf("the binding's host, port or database: %w", err)
	}
	cfg.User, cfg.Password = user, password
	if cfg.TLSConfig, err = b.TLSConfig(host); err != nil {
		return nil, err
	}
	cfg.Fallbacks = nil
	if hostaddr != "" {
		cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{hostaddr}, nil }
	}
	return cfg, nil
}

func quoteConn(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func execMode(mode string) (pgx.QueryExecMode, error) {
	switch mode {
	case "", "simple":
		// pgbench -M simple: the text protocol, values inlined.
		return pgx.QueryExecModeSimpleProtocol, nil
	case "extended":
		// pgbench -M extended: unnamed statements, parameters bound.
		return pgx.QueryExecModeExec, nil
	case "prepared":
		// pgbench -M prepared: each statement prepared once per connection.
		return pgx.QueryExecModeCacheStatement, nil
	}
	return 0, fmt.Errorf("-M is simple, extended or prepared, not %q", mode)
}

// PostgresInit creates and fills the TPC-B tables as pgbench -i -s scale
// does with its default steps (dtgvp): drop, create, generate on the
// client (COPY for accounts), vacuum, primary keys.
func PostgresInit(ctx context.Context, cfg *pgx.ConnConfig, scale int64, out io.Writer) error {
	if scale < 1 {
		return fmt.Errorf("the scale must be at least 1, got %d", scale)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	exec := func(sql string) error {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	}
	start := time.Now()
	fmt.Fprintln(out, "dropping old tables...")
	if err := exec("drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"); err != nil {
		return err
	}
	fmt.Fprintln(out, "creating tables...")
	for _, sql := range []string{
		"create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22))",
		"create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100)",
		"create table pgbench_accounts(aid int not null,bid int,abalance int,filler char(84)) with (fillfactor=100)",
		"create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100)",
	} {
		if err := exec(sql); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "generating data (client-side)...")
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, $1::int) as bid", scale); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "insert into pgbench_tellers(tid,bid,tbalance) select tid, (tid - 1) / 10 + 1, 0 from generate_series(1, $1::int) as tid", scale*tellersPerBranch); err != nil {
		return err
	}
	n := scale * accountsPerBranch
	rows := &accountRows{n: n, out: out}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pgbench_accounts"}, []string{"aid", "bid", "abalance", "filler"}, rows); err != nil {
		return fmt.Errorf("copying pgbench_accounts: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "vacuuming...")
	for _, sql := range []string{
		"vacuum analyze pgbench_branches", "vacuum analyze pgbench_tellers",
		"vacuum analyze pgbench_accounts", "vacuum analyze pgbench_history",
	} {
		if err := exec(sql); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "creating primary keys...")
	for _, sql := range []string{
		"alter table pgbench_branches add primary key (bid)",
		"alter table pgbench_tellers add primary key (tid)",
		"alter table pgbench_accounts add primary key (aid)",
	} {
		if err := exec(sql); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "done in %.2f s (scale %d: %d accounts).\n", time.Since(start).Seconds(), scale, n)
	return nil
}

// pgbench's TPC-B sizes per unit of scale.
const (
	accountsPerBranch = 100000
	tellersPerBranch  = 10
)

// accountRows generates pgbench_accounts for COPY without holding them in
// memory.
type accountRows struct {
	n, i int64
	row  [4]any
	out  io.Writer
}

func (r *accountRows) Next() bool {
	r.i++
	if r.i%accountsPerBranch == 0 && r.i/accountsPerBranch%10 == 0 {
		fmt.Fprintf(r.out, "%d of %d tuples done\n", r.i, r.n)
	}
	return r.i <= r.n
}

func (r *accountRows) Values() ([]any, error) {
	r.row = [4]any{int32(r.i), int32((r.i-1)/accountsPerBranch + 1), int32(0), ""}
	return r.row[:], nil
}

func (r *accountRows) Err() error { return nil }

// PostgresRun runs the script on Clients connections.
func PostgresRun(ctx context.Context, cfg *pgx.ConnConfig, o PostgresOptions) (*Result, error) {
	script, err := ParseScript(o.Script)
	if err != nil {
		return nil, err
	}
	mode, err := execMode(o.Mode)
	if err != nil {
		return nil, err
	}
	cfg = cfg.Copy()
	cfg.DefaultQueryExecMode = mode
	// Connections first (in parallel), then the clock: as pgbench reports
	// tps "without initial connection time".
	conns := make([]*pgx.Conn, o.Clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close(context.Background())
			}
		}
	}()
	errs := make(chan error, o.Clients)
	for i := range conns {
		go func() {
			c, err := pgx.ConnectConfig(ctx, cfg)
			conns[i] = c
			errs <- err
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			return nil, fmt.Errorf("connecting: %w", err)
		}
	}
	scale := o.Scale
	if scale == 0 && script.UsesScale {
		if err := conns[0].QueryRow(ctx, "select count(*) from pgbench_branches").Scan(&scale); err != nil {
			return nil, fmt.Errorf("reading the scale from pgbench_branches (run --init first, or give -s): %w", err)
		}
		if scale == 0 {
			return nil, errors.New("pgbench_branches is empty: run --init first")
		}
	}
	name := o.ScriptName
	if name == "" {
		name = "tpcb-like"
	}
	seed := uint64(time.Now().UnixNano())
	res, err := Run(ctx, fmt.Sprintf("postgres %s (scale %d, %d clients, -M %s)", name, scale, o.Clients, orDefault(o.Mode, "simple")),
		"transactions", o.Clients, o.Limits, func(ctx context.Context, w *Worker) error {
			conn := conns[w.ID]
			env := script.NewEnv(scale, int64(w.ID), seed)
			args := make([]any, 0, 8)
			for w.Take(1) == 1 {
				start := time.Now()
				err := runScript(ctx, conn, script, env, args)
				lat := time.Since(start)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					w.Counter.Error()
					if conn.PgConn().TxStatus() != 'I' {
						_, _ = conn.Exec(ctx, "ROLLBACK")
					}
					var pgErr *pgconn.PgError
					if !errors.As(err, &pgErr) {
						// Not an SQL error (the connection broke):
						// this client stops, as a pgbench client does.
						return fmt.Errorf("client %d: %w", w.ID, err)
					}
					continue
				}
				w.Hist.Record(lat)
				w.Counter.Add(1, lat)
			}
			return nil
		})
	return res, err
}

func runScript(ctx context.Context, conn *pgx.Conn, s *Script, env *Env, args []any) error {
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Set >= 0 {
			env.Vals[st.Set] = st.Expr(env)
			continue
		}
		args = args[:0]
		for _, a := range st.Args {
			args = append(args, env.Vals[a])
		}
		if _, err := conn.Exec(ctx, st.SQL, args...); err != nil {
			return err
		}
	}
	return nil
}

// CheckTPCB verifies what TPC-B transactions keep true: every balance
// change is in pgbench_history, so the sums of the account, teller and
// branch balances each equal the sum of the history's deltas. It returns
// the history's row count.
func CheckTPCB(ctx context.Context, cfg *pgx.ConnConfig) (int64, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var accounts, tellers, branches, deltas, rows int64
	err = conn.QueryRow(ctx, `select
		(select coalesce(sum(abalance), 0) from pgbench_accounts),
		(select coalesce(sum(tbalance), 0) from pgbench_tellers),
		(select coalesce(sum(bbalance), 0) from pgbench_branches),
		(select coalesce(sum(delta), 0) from pgbench_history),
		(select count(*) from pgbench_history)`).Scan(&accounts, &tellers, &branches, &deltas, &rows)
	if err != nil {
		return 0, err
	}
	if accounts != deltas || tellers != deltas || branches != deltas {
		return rows, fmt.Errorf("TPC-B invariant broken: sum of account balances %d, teller balances %d, branch balances %d, history deltas %d (%d rows)",
			accounts, tellers, branches, deltas, rows)
	}
	return rows, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
