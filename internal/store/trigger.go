package store

import (
	"context"
	"fmt"
	"strings"
)

// NotifyFunction is the trigger function that wakes dispatchers when rows
// are inserted: it sends the job's name on the "pampa.dispatch" channel.
const NotifyFunction = "pampa_notify_dispatch"

// NotifyTriggerDDL returns the statements that make inserts into a job's
// table wake the dispatchers at once (PostgreSQL only). The trigger fires
// once per INSERT statement, not per row, so a bulk insert costs one
// notification.
func (j *JobSQL) NotifyTriggerDDL(job string) (trigger string, ddl []string) {
	trigger = indexBase(job) + "_notify"
	fn := Quote(NotifyFunction)
	ddl = []string{
		`CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $pampa$
BEGIN
	PERFORM pg_notify('pampa.dispatch', TG_ARGV[0]);
	RETURN NULL;
END
$pampa$`,
		fmt.Sprintf(`CREATE OR REPLACE TRIGGER %s AFTER INSERT ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)`,
			Quote(trigger), j.t, fn, quoteLiteral(job)),
	}
	return trigger, ddl
}

// quoteLiteral quotes a string as an SQL literal. DDL takes no bind
// parameters; this is the one place a value is written into SQL, and only
// a job's name from the configuration.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, "\x00", ""), "'", "''") + "'"
}

// TriggerExists reports whether the table has a trigger of that name
// (PostgreSQL).
func (s *Store) TriggerExists(ctx context.Context, table Ident, name string) (bool, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace
		WHERE t.tgname = $1 AND c.relname = $2 AND ns.nspname = COALESCE(NULLIF($3, ''), current_schema())`,
		name, table.Name, table.Schema).Scan(&n)
	return n > 0, err
}
