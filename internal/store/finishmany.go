package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// maxBatchRows bounds the rows one batched finish writes; maxBatchParams
// its bound parameters, below every engine's limit (SQLite's is 32,766).
const (
	maxBatchRows   = 512
	maxBatchParams = 30_000
)

// batchRows is how many rows of width parameters one statement takes: a
// power of two, as statements are padded to one.
func batchRows(width int) int {
	n := maxBatchRows
	for n > 1 && n*width > maxBatchParams {
		n /= 2
	}
	return n
}

// FinishMany records the outcomes of several tries, fs[i] with os[i], and
// reports which were applied (see Finish). Outcomes that write the same
// columns go in one UPDATE … FROM (VALUES …) statement, padded to a power
// of two rows so that few distinct statements are prepared: a batch costs
// the database one statement, not one per row. Where a batch cannot be
// written that way (an engine or a column type it does not cover), each
// row is finished on its own.
func (j *JobSQL) FinishMany(ctx context.Context, q Querier, fs []Fence, outs []Outcome) ([]bool, error) {
	applied := make([]bool, len(fs))
	groups := map[string][]int{} // written columns (and finality) → indexes into fs
	var order []string
	for i, o := range outs {
		sig := strings.Join(sortedKeys(o.Set), "\x00")
		if o.final() {
			sig = "\x01final\x00" + sig
		}
		if _, ok := groups[sig]; !ok {
			order = append(order, sig)
		}
		groups[sig] = append(groups[sig], i)
	}
	for _, sig := range order {
		idx := groups[sig]
		cols := sortedKeys(outs[idx[0]].Set)
		casts, batchable := j.batchCasts(cols)
		var err error
		if !batchable || len(idx) == 1 || hasDuplicateKeys(fs, idx) {
			for _, i := range idx {
				if applied[i], err = j.Finish(ctx, q, fs[i], outs[i]); err != nil {
					return nil, err
				}
			}
			continue
		}
		per := batchRows(5 + len(cols))
		for start := 0; start < len(idx); start += per {
			chunk := idx[start:min(start+per, len(idx))]
			if err := j.finishChunk(ctx, q, fs, outs, chunk, cols, casts, applied); err != nil {
				return nil, err
			}
		}
	}
	return applied, nil
}

// finishChunk writes one batched finish statement for the rows chunk.
func (j *JobSQL) finishChunk(ctx context.Context, q Querier, fs []Fence, outs []Outcome, chunk []int, cols []string, casts map[string]string, applied []bool) error {
	rows := 1
	for rows < len(chunk) {
		rows *= 2
	}
	width := 5 + len(cols)          // key, worker, try, success, error, set columns
	final := outs[chunk[0]].final() // the same for the whole chunk (see FinishMany)
	var args []any
	if final {
		args = make([]any, 0, 2+rows*width)
		args = append(args, j.spec.MaxTryTimes, j.spec.MaxTryTimes)
	} else {
		args = make([]any, 0, rows*width)
	}
	for _, i := range chunk {
		f, o := fs[i], outs[i]
		var errArg any
		if !o.Success {
			errArg = o.Error
		}
		args = append(args, f.Key, f.Worker, f.Try, o.Success, errArg)
		for _, c := range cols {
			args = append(args, o.Set[c])
		}
	}
	for len(args) < cap(args) {
		args = append(args, nil) // padding rows: a NULL key matches nothing
	}
	res, err := j.s.query(ctx, q, j.finishManySQL(cols, casts, rows, final), args...)
	if err != nil {
		return err
	}
	defer res.Close()
	byKey := make(map[string]int, len(chunk))
	for _, i := range chunk {
		byKey[keyString(fs[i].Key)] = i
	}
	for res.Next() {
		var k any
		if err := res.Scan(&k); err != nil {
			return err
		}
		if i, ok := byKey[keyString(normalizeKey(k))]; ok {
			applied[i] = true
		}
	}
	return res.Err()
}

// finishManySQL is the batched finish for a set of written columns and a
// number of rows, of outcomes final or not. The fence is the one of
// Finish, row by row.
func (j *JobSQL) finishManySQL(cols []string, casts map[string]string, rows int, final bool) string {
	d := j.s.Dialect
	// v's columns: k (key), w (worker), n (try), s (success), e (error),
	// then c0, c1, … for the set columns, in order.
	names := []string{"k", "w", "n", "s", "e"}
	targets := []string{j.spec.PrimaryKey, j.spec.ReservationID, j.spec.ReservationTimes, j.spec.Success, j.spec.ErrorDescription}
	for i, c := range cols {
		names = append(names, fmt.Sprintf("c%d", i))
		targets = append(targets, c)
	}
	// The table is aliased "r", the values "b": the table's own name may
	// be either, or schema-qualified.
	typed := d.TypedValues()
	ref := func(i int) string {
		if !typed { // untyped VALUES name their columns column1, column2, …
			return fmt.Sprintf("b.column%d", i+1)
		}
		return "b." + names[i]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE %s AS r SET %s = %s, %s = %s, %s = %s", j.t, j.endTime, j.s.Dialect.Now(),
		j.success, ref(3), j.errorDescription, ref(4))
	if final {
		b.WriteString(j.finalSQL("r."))
	}
	for i, c := range cols {
		fmt.Fprintf(&b, ", %s = %s", Quote(c), ref(5+i))
	}
	b.WriteString(" FROM (VALUES ")
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i, col := range targets {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('?')
			if typed {
				b.WriteString(d.Cast(casts[col]))
			}
		}
		b.WriteByte(')')
	}
	b.WriteString(") AS b")
	if typed {
		b.WriteString("(" + strings.Join(names, ", ") + ")")
	}
	returning := j.pk
	if d.QualifiesReturning() {
		returning = "r." + j.pk
	}
	// Unindexed keeps SQLite from reading the table through the in-flight
	// index, which its statistics may show empty, with the values in an
	// inner loop: every row in flight times every row of the batch.
	ended := d.Unindexed("r." + j.endTime)
	fmt.Fprintf(&b, " WHERE r.%[1]s = %[2]s AND r.%[3]s = %[4]s AND r.%[5]s = %[6]s AND r.%[7]s IS NOT NULL AND %[8]s IS NULL RETURNING %[9]s",
		j.pk, ref(0), j.reservationID, ref(1), j.reservationTimes, ref(2), j.startTime, ended, returning)
	return j.s.q(b.String())
}

// batchCasts returns the types that bound values are cast to in a batched
// finish that writes cols (nil where values need none), and whether such a
// batch can be written at all.
func (j *JobSQL) batchCasts(cols []string) (map[string]string, bool) {
	d := j.s.Dialect
	if !d.BatchesFinishes() {
		return nil, false
	}
	if !d.TypedValues() {
		return nil, true
	}
	casts := j.casts.Load()
	if casts == nil {
		return nil, false // not loaded (yet): row by row
	}
	for _, c := range append([]string{j.spec.PrimaryKey, j.spec.ReservationID, j.spec.ReservationTimes, j.spec.Success, j.spec.ErrorDescription}, cols...) {
		if _, ok := (*casts)[c]; !ok {
			return nil, false
		}
	}
	return *casts, true
}

// LoadColumnTypes reads, where batched finishes cast their values
// (Dialect.TypedValues), the column types they cast to. Until it has
// succeeded, results are recorded row by row.
func (j *JobSQL) LoadColumnTypes(ctx context.Context) error {
	d := j.s.Dialect
	if !d.BatchesFinishes() || !d.TypedValues() || j.casts.Load() != nil {
		return nil
	}
	casts, err := columnCasts(ctx, j.s.DB, j.spec.Table)
	if err != nil {
		return fmt.Errorf("read column types of %s: %w", j.t, err)
	}
	j.casts.Store(&casts)
	return nil
}

// columnCasts reads a PostgreSQL table's column types without their
// modifiers, as cast targets: a value cast to "character varying" keeps
// its length, and the assignment to the column then checks it, as a
// single-row UPDATE does. Types whose unmodified form would change a
// value (bit means bit(1), character means character(1)) are left out,
// so outcomes writing such columns are finished row by row.
func columnCasts(ctx context.Context, q Querier, t Ident) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, t.Quoted())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	casts := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		switch strings.TrimSuffix(typ, "[]") {
		case "bit", "character", "bpchar", `"char"`:
			continue
		}
		casts[name] = typ
	}
	return casts, rows.Err()
}

// hasDuplicateKeys reports whether two of the rows idx name the same key:
// one statement cannot apply both, so they are finished one by one.
func hasDuplicateKeys(fs []Fence, idx []int) bool {
	seen := make(map[string]bool, len(idx))
	for _, i := range idx {
		k := keyString(fs[i].Key)
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// keyString is a key's identity for matching rows a statement returned to
// the fences that asked for them.
func keyString(k any) string {
	switch k := k.(type) {
	case time.Time:
		return k.UTC().Format(time.RFC3339Nano)
	case []byte:
		return string(k)
	}
	return fmt.Sprint(k)
}
