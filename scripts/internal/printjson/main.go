// Command printjson prints a flat JSON object from stdin as aligned
// "key: value" lines, for the demo's summary.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

func main() {
	var obj map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&obj); err != nil {
		fmt.Fprintf(os.Stderr, "printjson: %v\n", err)
		os.Exit(1)
	}
	keys := make([]string, 0, len(obj))
	width := 0
	for k := range obj {
		keys = append(keys, k)
		width = max(width, len(k))
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %-*s  %v\n", width+1, k+":", obj[k])
	}
}
