package model

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Latest is the qualifier of a function's mutable, unpublished code, as
// Lambda names it.
const Latest = "$LATEST"

// aliasName is Lambda's rule for alias names, less the all-digits names,
// which are versions.
var aliasName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Qualify names a function's version or alias: <name>:<qualifier>, or
// just <name> without a qualifier.
func Qualify(name, qualifier string) string {
	if qualifier == "" {
		return name
	}
	return name + ":" + qualifier
}

// SplitQualified splits <name>[:<qualifier>] as callers write it.
func SplitQualified(s string) (name, qualifier string) {
	name, qualifier, _ = strings.Cut(s, ":")
	return name, qualifier
}

// IsVersionNumber reports whether s names a published version: a decimal
// number from 1, without leading zeros, so that each version has one name.
func IsVersionNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && strconv.Itoa(n) == s
}

// ValidateQualifier checks a qualifier a caller or a trigger names: empty
// or $LATEST, a version number, or an alias name.
func ValidateQualifier(q string) error {
	switch {
	case q == "" || q == Latest || IsVersionNumber(q):
		return nil
	case aliasName.MatchString(q) && strings.Trim(q, "0123456789") != "":
		return nil
	}
	return fmt.Errorf("qualifier %q is neither $LATEST, a version number (1, 2, ...) nor an alias name (letters, digits, - and _, at most 128, not all digits)", q)
}
