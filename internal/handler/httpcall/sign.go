package httpcall

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The signature scheme, as webhooks from Stripe or GitHub sign theirs: the
// request carries the time it was signed in X-Pampa-Timestamp (unix
// seconds) and, in X-Pampa-Signature, "sha256=" then the lowercase hex of
// HMAC-SHA256(secret, timestamp + "." + body). Signing the time with the
// body lets a receiver refuse a request replayed long after it was sent.
const (
	HeaderTimestamp = "X-Pampa-Timestamp"
	HeaderSignature = "X-Pampa-Signature"
	signaturePrefix = "sha256="
)

// ErrBadSignature is wrapped by every error of Verify.
var ErrBadSignature = errors.New("bad request signature")

// Sign returns the X-Pampa-Signature value of body signed at timestamp
// (the X-Pampa-Timestamp value, unix seconds in decimal).
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's X-Pampa-Timestamp and X-Pampa-Signature
// values against its body, for receivers written in Go. A timestamp
// further than maxSkew from now, either way, is refused; maxSkew 0 skips
// that check (a replayed request then passes).
func Verify(secret []byte, timestamp, signature string, body []byte, maxSkew time.Duration) error {
	if timestamp == "" || signature == "" {
		return fmt.Errorf("%w: %s or %s is missing", ErrBadSignature, HeaderTimestamp, HeaderSignature)
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s = %q is not unix seconds", ErrBadSignature, HeaderTimestamp, timestamp)
	}
	if maxSkew > 0 {
		age := time.Since(time.Unix(sec, 0)).Truncate(time.Second)
		if age > maxSkew {
			return fmt.Errorf("%w: signed %s ago, more than %s", ErrBadSignature, age, maxSkew)
		}
		if -age > maxSkew {
			return fmt.Errorf("%w: signed %s ahead of this clock, more than %s", ErrBadSignature, -age, maxSkew)
		}
	}
	got, ok := strings.CutPrefix(signature, signaturePrefix)
	if !ok {
		return fmt.Errorf("%w: %s does not start with %q", ErrBadSignature, HeaderSignature, signaturePrefix)
	}
	want := Sign(secret, timestamp, body)[len(signaturePrefix):]
	if !hmac.Equal([]byte(strings.ToLower(got)), []byte(want)) {
		return fmt.Errorf("%w: %s does not match the body (another secret, or a changed body)", ErrBadSignature, HeaderSignature)
	}
	return nil
}
