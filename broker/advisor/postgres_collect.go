package advisor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CollectPostgres reads what AdvisePostgres needs over conn, a session of a
// binding's login in the database to advise on, and tries each candidate
// index with HypoPG.
//
// It changes nothing in the database:
//   - every transaction it opens is READ ONLY, so a statement that would
//     write fails instead;
//   - a statement from pg_stat_statements is only PREPAREd and EXPLAINed
//     (never executed), through the extended protocol, which refuses a text
//     holding more than one statement;
//   - HypoPG's hypothetical indexes live in the memory of this session
//     only: no other session, and no real query (HypoPG only acts on plain
//     EXPLAIN) ever sees them, and hypopg_reset drops them after each try.
//
// All of a trial happens in one transaction, so it also works through
// PgBouncer in transaction mode (the binding's host on standard and ha).
//
// sample is how long to watch pg_stat_database for the peak number of
// connections (0: one look).
func CollectPostgres(ctx context.Context, conn *pgx.Conn, o PostgresOptions, sample time.Duration) (PostgresInputs, error) {
	o = o.withDefaults()
	var in PostgresInputs
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute+sample)
	defer cancel()

	var hasStatements, hasHypoPG bool
	err := readOnly(ctx, conn, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT current_database(),
		    EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements'),
		    EXISTS (SELECT FROM pg_extension WHERE extname = 'hypopg')`).Scan(&in.Database, &hasStatements, &hasHypoPG)
	})
	if err != nil {
		return in, fmt.Errorf("reading the database's extensions: %w", err)
	}
	if err := readOnly(ctx, conn, func(tx pgx.Tx) error { return collectStats(ctx, tx, &in) }); err != nil {
		return in, err
	}
	if hasStatements {
		if err := readOnly(ctx, conn, func(tx pgx.Tx) error { return collectStatements(ctx, tx, &in) }); err != nil {
			return in, err
		}
	} else {
		in.Notes = append(in.Notes, "pg_stat_statements is not created in database "+in.Database+": no statement was examined")
	}
	if err := samplePeakConnections(ctx, conn, sample, &in); err != nil {
		return in, err
	}

	top := TopStatements(in.Statements, o.TopStatements)
	large := LargeTables(in.Tables, o.MinTableRows)
	switch {
	case len(top) == 0 || len(large) == 0:
		// Nothing to try: no statement, or no table big enough for a
		// sequential scan to matter.
	case !hasHypoPG:
		in.Notes = append(in.Notes, "the hypopg extension is not created in database "+in.Database+
			": missing indexes cannot be verified, so none is recommended (add hypopg to the instance's extensions parameter)")
	default:
		for _, s := range top {
			trials, err := tryIndexes(ctx, conn, s, large)
			if err != nil {
				if ctx.Err() != nil {
					return in, ctx.Err()
				}
				in.Notes = append(in.Notes, fmt.Sprintf("statement %d could not be planned (%s): %s", s.QueryID, errSummary(err), oneLine(s.Query, 80)))
				continue
			}
			in.Trials = append(in.Trials, trials...)
		}
	}
	return in, nil
}

// readOnly runs fn in a READ ONLY transaction with short timeouts: the
// advisor must never hold up the tenant's own work.
func readOnly(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '20s'; SET LOCAL lock_timeout = '2s'"); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func collectStats(ctx context.Context, tx pgx.Tx, in *PostgresInputs) error {
	rows, err := tx.Query(ctx, `SELECT schemaname, relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0),
	    coalesce(idx_scan, 0), greatest(n_live_tup, (SELECT reltuples::bigint FROM pg_class WHERE oid = relid)),
	    pg_total_relation_size(relid)
	  FROM pg_stat_user_tables`)
	if err != nil {
		return fmt.Errorf("reading pg_stat_user_tables: %w", err)
	}
	for rows.Next() {
		var t TableStats
		if err := rows.Scan(&t.Schema, &t.Name, &t.SeqScan, &t.SeqTupRead, &t.IdxScan, &t.LiveRows, &t.Bytes); err != nil {
			return err
		}
		in.Tables = append(in.Tables, t)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading pg_stat_user_tables: %w", err)
	}

	// Key columns only (indnkeyatts): INCLUDE columns do not order the
	// index. pg_get_indexdef(oid, n, true) renders column n, or its
	// expression.
	rows, err = tx.Query(ctx, `SELECT s.schemaname, s.relname, s.indexrelname,
	    ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k),
	    am.amname, coalesce(pg_get_expr(i.indpred, i.indrelid, true), ''),
	    i.indisunique, i.indisprimary, EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid),
	    i.indisvalid, coalesce(s.idx_scan, 0), pg_relation_size(s.indexrelid), pg_get_indexdef(s.indexrelid)
	  FROM pg_stat_user_indexes s
	  JOIN pg_index i ON i.indexrelid = s.indexrelid
	  JOIN pg_class c ON c.oid = s.indexrelid
	  JOIN pg_am am ON am.oid = c.relam`)
	if err != nil {
		return fmt.Errorf("reading pg_stat_user_indexes: %w", err)
	}
	for rows.Next() {
		var i IndexStats
		if err := rows.Scan(&i.Schema, &i.Table, &i.Name, &i.Keys, &i.Method, &i.Predicate, &i.Unique, &i.Primary,
			&i.Constraint, &i.Valid, &i.Scans, &i.Bytes, &i.Def); err != nil {
			return err
		}
		in.Indexes = append(in.Indexes, i)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading pg_stat_user_indexes: %w", err)
	}

	in.Settings = map[string]int64{}
	rows, err = tx.Query(ctx, `SELECT name, setting, coalesce(unit, '') FROM pg_settings
	  WHERE name IN ('shared_buffers', 'effective_cache_size', 'work_mem', 'maintenance_work_mem', 'max_connections')`)
	if err != nil {
		return fmt.Errorf("reading pg_settings: %w", err)
	}
	for rows.Next() {
		var name, setting, unit string
		if err := rows.Scan(&name, &setting, &unit); err != nil {
			return err
		}
		n, err := SettingBytes(setting, unit)
		if err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
		if name == "max_connections" {
			in.MaxConnections = n
		} else {
			in.Settings[name] = n
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading pg_settings: %w", err)
	}

	var reset *time.Time
	err = tx.QueryRow(ctx, `SELECT blks_hit, blks_read, temp_files, temp_bytes, stats_reset
	  FROM pg_stat_database WHERE datname = current_database()`).
		Scan(&in.BlocksHit, &in.BlocksRead, &in.TempFiles, &in.TempBytes, &reset)
	if err != nil {
		return fmt.Errorf("reading pg_stat_database: %w", err)
	}
	if reset != nil {
		in.StatsSince = *reset
	}
	return nil
}

// SettingBytes converts a pg_settings value to a number: bytes for memory
// settings (unit 8kB, kB, MB, B), the value itself when there is no unit.
func SettingBytes(setting, unit string) (int64, error) {
	n, err := strconv.ParseInt(setting, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", setting)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1 << 10, "8kB": 8 << 10, "16kB": 16 << 10, "32kB": 32 << 10, "MB": 1 << 20, "GB": 1 << 30}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	if n < 0 {
		// -1 means "the default derived from another setting": unknown.
		return 0, nil
	}
	return n * m, nil
}

func collectStatements(ctx context.Context, tx pgx.Tx, in *PostgresInputs) error {
	// A login sees the text of its own statements only, unless it has
	// pg_read_all_stats; the others read "<insufficient privilege>".
	rows, err := tx.Query(ctx, `SELECT coalesce(queryid, 0), coalesce(query, ''), calls, total_exec_time, mean_exec_time, rows
	  FROM pg_stat_statements
	  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
	  ORDER BY total_exec_time DESC LIMIT 500`)
	if err != nil {
		return fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	hidden := 0
	for rows.Next() {
		var s Statement
		if err := rows.Scan(&s.QueryID, &s.Query, &s.Calls, &s.TotalMs, &s.MeanMs, &s.Rows); err != nil {
			return err
		}
		if s.Query == "<insufficient privilege>" || s.Query == "" {
			hidden++
			continue
		}
		in.Statements = append(in.Statements, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	if hidden > 0 {
		in.Notes = append(in.Notes, fmt.Sprintf("%d of the statements with the most time belong to other logins and their text is hidden from this one: run the advisor with the binding of the application whose queries you want advised", hidden))
	}
	return nil
}

// samplePeakConnections counts the connections once, then every second
// for d.
func samplePeakConnections(ctx context.Context, conn *pgx.Conn, d time.Duration, in *PostgresInputs) error {
	end := time.Now().Add(d)
	for {
		var n int64
		// pg_stat_database's numbackends, not pg_stat_activity: a login
		// without pg_read_all_stats sees other logins' sessions there with
		// backend_type NULL, so it could not tell client sessions apart.
		// numbackends counts every database's connections (and an
		// autovacuum worker while it runs).
		err := readOnly(ctx, conn, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database`).Scan(&n)
		})
		if err != nil {
			return fmt.Errorf("counting connections: %w", err)
		}
		in.PeakConnections = max(in.PeakConnections, n)
		if !time.Now().Add(time.Second).Before(end) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

var prepareSeq atomic.Int64

// tryIndexes plans statement s generically (its $n parameters unknown, as
// pg_stat_statements keeps it), proposes an index for each sequential
// scan of a large table it does, and has HypoPG plan it again with each
// hypothetical index. One READ ONLY transaction.
func tryIndexes(ctx context.Context, conn *pgx.Conn, s Statement, large map[string]bool) ([]IndexTrial, error) {
	name := fmt.Sprintf("strata_advisor_%d", prepareSeq.Add(1))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		_ = tx.Rollback(bg)
		// A prepared statement outlives the transaction that made it.
		_, _ = conn.PgConn().ExecParams(bg, "DEALLOCATE "+name, nil, nil, nil, nil).Close()
		// After an error the hypothetical index may still be there:
		// hypopg_reset, in a read-only transaction like everything else.
		_ = readOnly(bg, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(bg, "SELECT hypopg_reset()")
			return err
		})
	}()
	// A generic plan, so $1 stays a parameter rather than NULL (which the
	// planner would fold away).
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '2s'"); err != nil {
		return nil, err
	}
	q := strings.TrimRight(strings.TrimSpace(s.Query), "; \n\t")
	explain := func() (planNode, error) {
		// ExecParams: the extended protocol, which refuses more than one
		// statement in the text. Each plan is prepared anew: a generic
		// plan is cached, and HypoPG does not invalidate it.
		if _, err := conn.PgConn().ExecParams(ctx, "PREPARE "+name+" AS "+q, nil, nil, nil, nil).Close(); err != nil {
			return planNode{}, err
		}
		var nparams int
		if err := tx.QueryRow(ctx, "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1", name).Scan(&nparams); err != nil {
			return planNode{}, err
		}
		args := strings.TrimSuffix(strings.Repeat("NULL, ", nparams), ", ")
		if nparams > 0 {
			args = "(" + args + ")"
		}
		var out string
		if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE "+name+args).Scan(&out); err != nil {
			return planNode{}, err
		}
		if _, err := conn.PgConn().ExecParams(ctx, "DEALLOCATE "+name, nil, nil, nil, nil).Close(); err != nil {
			return planNode{}, err
		}
		return ParsePlan([]byte(out))
	}
	before, err := explain()
	if err != nil {
		return nil, err
	}
	var trials []IndexTrial
	for _, c := range IndexCandidates(before, large) {
		var hypo string
		if err := tx.QueryRow(ctx, "SELECT indexname FROM hypopg_create_index($1)", c.CreateIndex(false)).Scan(&hypo); err != nil {
			return nil, fmt.Errorf("hypopg_create_index: %w", err)
		}
		after, err := explain()
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, "SELECT hypopg_reset()"); err != nil {
			return nil, err
		}
		trials = append(trials, IndexTrial{Statement: s, Candidate: c,
			CostBefore: before.TotalCost, CostAfter: after.TotalCost, Used: after.UsesIndex(hypo)})
	}
	return trials, tx.Commit(ctx)
}

// errSummary is an error's first line; for a PostgreSQL error its message
// and SQLSTATE (never its detail, which may quote data).
func errSummary(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return fmt.Sprintf("%s, SQLSTATE %s", oneLine(pgErr.Message, 160), pgErr.Code)
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	return oneLine(first, 160)
}
