package model

import (
	"fmt"
	"strings"
)

// ValidateTarget checks what a trigger (a route, schedule, KV trigger or
// event source) invokes: a function's name, or <name>:<qualifier> for one
// of its published versions, one of its aliases or $LATEST. The error's
// field is "function", the attribute that names the target.
func ValidateTarget(target string) *FieldError {
	name, qualifier := SplitQualified(target)
	if e := ValidateName(name); e != nil {
		e.Field = "function"
		return e
	}
	if qualifier == "" && strings.Contains(target, ":") {
		return &FieldError{"function", fmt.Sprintf("%q ends with ':' but names no qualifier: write %s alone, or %s:<version number>, %s:<alias> or %s:%s", target, name, name, name, name, Latest)}
	}
	if err := ValidateQualifier(qualifier); err != nil {
		return &FieldError{"function", fmt.Sprintf("%q: %v; write %s alone for its $LATEST code, %s:<version number>, or %s:<alias>", target, err, name, name, name)}
	}
	return nil
}
