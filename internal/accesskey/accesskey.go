// Package accesskey makes and reads Nimbus access keys: an id that names
// the key, like an AWS access key id, and a secret that signs requests
// (SigV4) or, joined to the id, is a bearer token.
package accesskey

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// IDPrefix starts every access key id, as AKIA starts AWS's.
const IDPrefix = "NIMB"

var (
	idPattern     = regexp.MustCompile(`^` + IDPrefix + `[A-Z2-7]{16}$`)
	secretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{40}$`)
)

// New makes an access key id and its secret from crypto/rand: 80 random
// bits name the key, 240 make the secret.
func New() (id, secret string, err error) {
	b := make([]byte, 40)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("no randomness for an access key: %w", err)
	}
	id = IDPrefix + base32.StdEncoding.EncodeToString(b[:10])
	secret = base64.RawURLEncoding.EncodeToString(b[10:])
	return id, secret, nil
}

// ValidID reports whether id has the shape New gives.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ValidSecret reports whether secret has the shape New gives.
func ValidSecret(secret string) bool { return secretPattern.MatchString(secret) }

// Token is the bearer token of a key: "<id>.<secret>".
func Token(id, secret string) string { return id + "." + secret }

// ParseToken splits a bearer token into id and secret.
func ParseToken(token string) (id, secret string, err error) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok || !ValidID(id) || !ValidSecret(secret) {
		return "", "", fmt.Errorf("not a Nimbus access key token: it has the form %s<16 characters>.<40-character secret>, as nimbus_access_key's bearer_token", IDPrefix)
	}
	return id, secret, nil
}

// ValidPattern reports why a function pattern is unusable, or "" when it
// is fine: a function name, or one with * wildcards ("orders-*", "*").
func ValidPattern(p string) string {
	if p == "" {
		return "a function pattern cannot be empty; use \"*\" for every function"
	}
	if strings.ContainsAny(p, "?[]\\/") {
		return fmt.Sprintf("%q: only * is a wildcard in a function pattern; use function names with * in them", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Sprintf("%q is not a valid pattern: %v", p, err)
	}
	return ""
}

// Matches reports whether any pattern matches the function's name.
func Matches(patterns []string, function string) bool {
	for _, p := range patterns {
		if ValidPattern(p) != "" {
			continue
		}
		if ok, _ := path.Match(p, function); ok {
			return true
		}
	}
	return false
}
