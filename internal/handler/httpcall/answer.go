package httpcall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/pampa-go/pampa/internal/handler"
)

// quoteLen caps the part of a body an error quotes: enough to show a
// server's message, short enough for a task's error description.
const quoteLen = 256

var errTooLarge = fmt.Errorf("more than %d bytes", MaxResponse)

// outcome maps an answer to the try's Outcome (the table is in
// docs/handlers-http.md). tooLarge says data holds only the first
// MaxResponse bytes of the body.
func (c *Caller) outcome(resp *http.Response, data []byte, tooLarge bool) handler.Outcome {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if tooLarge {
			return handler.Outcome{Err: fmt.Errorf("POST %s: answered %s with a body of %w: response too large", c.shown, resp.Status, errTooLarge)}
		}
		set, err := decodeSet(data)
		if err != nil {
			return handler.Outcome{Err: fmt.Errorf("POST %s: answered %s, but %w; body %s", c.shown, resp.Status, err, quoteCapped(data, false))}
		}
		return handler.Outcome{Set: set}
	case code >= 300 && code < 400:
		// A redirect is not followed: the request carries a signature and
		// a task's data, for the server named in the config and no other.
		return handler.Outcome{Err: fmt.Errorf("POST %s: answered %s to %q: redirects are not followed, so that a signed request is not sent elsewhere; set the job's http to the final address",
			c.shown, resp.Status, resp.Header.Get("Location"))}
	}
	final := code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
	text := fmt.Sprintf("POST %s: answered %s: body %s", c.shown, resp.Status, quoteCapped(data, tooLarge))
	if final {
		text += " (a 4xx: not tried again)"
	}
	return handler.Outcome{Err: &statusError{text: text, final: final}, Final: final}
}

// statusError is a non-2xx answer; one that fails its task for good wraps
// handler.ErrFinal without repeating its text.
type statusError struct {
	text  string
	final bool
}

func (e *statusError) Error() string { return e.text }

func (e *statusError) Unwrap() error {
	if e.final {
		return handler.ErrFinal
	}
	return nil
}

// readCapped reads the body to its end, so that the connection can serve
// the next try, but no more than MaxResponse bytes: past them it returns
// those and errTooLarge, and the connection is closed with the body.
func readCapped(body io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(body, MaxResponse+1))
	if err != nil {
		return data, err
	}
	if len(data) > MaxResponse {
		return data[:MaxResponse], errTooLarge
	}
	return data, nil
}

// decodeSet reads a 2xx body: nothing (or only spaces), or one JSON object
// whose members are the columns to set. Integers become int64 and other
// numbers float64, as a SQL driver expects; a nested object or array is
// refused, since no column type takes it as such.
func decodeSet(data []byte) (map[string]any, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	if data[0] != '{' {
		return nil, errors.New("its body is not a JSON object of columns to set")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var set map[string]any
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("its body is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("its body holds more than one JSON value")
	}
	for column, value := range set {
		switch v := value.(type) {
		case json.Number:
			n, err := number(v)
			if err != nil {
				return nil, fmt.Errorf("column %q: %w", column, err)
			}
			set[column] = n
		case map[string]any, []any:
			return nil, fmt.Errorf("column %q is a nested JSON value: send it as a string", column)
		}
	}
	if len(set) == 0 {
		return nil, nil
	}
	return set, nil
}

func number(n json.Number) (any, error) {
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil, fmt.Errorf("the number %s is out of range", n)
	}
	return f, nil
}

// quoteCapped quotes the start of a body for an error text, on one line.
func quoteCapped(data []byte, more bool) string {
	if len(data) == 0 && !more {
		return "empty"
	}
	if len(data) > quoteLen {
		data, more = data[:quoteLen], true
	}
	q := strconv.Quote(strings.ToValidUTF8(string(data), "\uFFFD"))
	if more {
		q += "…"
	}
	return q
}

// idempotencyKey is "job:key:try", the same for every sending of one try
// and different between tries. A string key is taken as it is, any other
// as its JSON text; bytes a header cannot carry, and %, are %XX-escaped.
func idempotencyKey(in handler.Input) string {
	key, ok := in.Key.(string)
	if !ok {
		b, err := json.Marshal(in.Key)
		key = string(b)
		if err != nil {
			key = fmt.Sprint(in.Key)
		}
	}
	return escapeHeader(in.Job) + ":" + escapeHeader(key) + ":" + strconv.Itoa(in.Try)
}

func escapeHeader(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c > ' ' && c < 0x7f && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
