// Command http is a processing function served over HTTP: the quick
// start's odd-number check, for the job of pampa.yaml beside it. Pampa's
// worker posts each try to /odd; the server checks the request's
// signature and answers the column to set, {"is_odd": true} or false.
// It uses the standard library only, as a receiver in any language could.
//
//	export PAMPA_HTTP_SECRET=$(openssl rand -hex 32)
//	go run ./examples/http &                  # listens on 127.0.0.1:8099
//	go run ./examples/http seed 10000         # pampa-demo/http.db: numbers 1..10000
//	go run ./cmd/pampa --config examples/http/pampa.yaml setup
//	go run ./cmd/pampa --config examples/http/pampa.yaml run --until-done
//	go run ./cmd/pampa --config examples/http/pampa.yaml report
//
// The request and its signature are described in docs/handlers-http.md.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver Pampa uses, for seed
)

// maxSkew is how far a request's signing time may be from this clock: a
// request replayed later than that is refused.
const maxSkew = 5 * time.Minute

func main() {
	if len(os.Args) > 1 && os.Args[1] == "seed" {
		if err := seed(os.Args[2:]); err != nil {
			log.Fatal(err)
		}
		return
	}
	addr := "127.0.0.1:8099"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	secret := os.Getenv("PAMPA_HTTP_SECRET")
	if secret == "" {
		log.Fatal("PAMPA_HTTP_SECRET is not set: it holds the secret the requests are signed with")
	}
	srv := &http.Server{Addr: addr, Handler: routes([]byte(secret)), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("answering tries on http://%s/odd", addr)
	log.Fatal(srv.ListenAndServe())
}

func routes(secret []byte) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /odd", checkOdd(secret))
	return mux
}

// checkOdd is the processing function: one request per try of a row of
// `numbers`. A 4xx answer fails the task for good, a 5xx retries it.
func checkOdd(secret []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if err := verify(secret, r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var in struct {
			Row struct {
				Value *int64 `json:"value"`
			} `json:"row"`
		}
		if err := json.Unmarshal(body, &in); err != nil || in.Row.Value == nil {
			http.Error(w, "the row has no integer column value", http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]bool{"is_odd": *in.Row.Value%2 != 0})
	}
}

// verify checks X-Pampa-Signature, "sha256=" and the hex of
// HMAC-SHA256(secret, timestamp + "." + body), where the timestamp is
// X-Pampa-Timestamp (unix seconds) and must be within maxSkew of now.
func verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	ts := h.Get("X-Pampa-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("X-Pampa-Timestamp is missing or not unix seconds")
	}
	if skew := now.Sub(time.Unix(sec, 0)).Abs(); skew > maxSkew {
		return fmt.Errorf("signed %s away from this clock, more than %s", skew.Round(time.Second), maxSkew)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(h.Get("X-Pampa-Signature")), []byte(want)) {
		return errors.New("X-Pampa-Signature does not match the body: another secret, or a changed body")
	}
	return nil
}

// seed creates the job's table anew in an SQLite file: `seed [N [FILE]]`,
// the numbers 1..N (default 10000) in FILE (default pampa-demo/http.db, the
// database of pampa.yaml beside this file, from the repository's top).
func seed(args []string) error {
	n, file := 10000, filepath.Join("pampa-demo", "http.db")
	if len(args) > 0 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil || n < 1 {
			return fmt.Errorf("seed: %q is not a positive number of rows", args[0])
		}
	}
	if len(args) > 1 {
		file = args[1]
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", file)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{`DROP TABLE IF EXISTS numbers`, `CREATE TABLE numbers (value INTEGER PRIMARY KEY, is_odd BOOLEAN)`,
		`WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ?) INSERT INTO numbers (value) SELECT v FROM n`} {
		var qargs []any
		if strings.Contains(q, "?") {
			qargs = append(qargs, n)
		}
		if _, err := db.Exec(q, qargs...); err != nil {
			return fmt.Errorf("seed %s: %w", file, err)
		}
	}
	log.Printf("seeded %s with the numbers 1..%d", file, n)
	return nil
}
