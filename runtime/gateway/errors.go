package gateway

import (
	"encoding/json"
	"net/http"
)

// writeJSONError answers with Lambda's error shape, so clients handle the
// gateway's refusals like the functions' own errors.
func writeJSONError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorType": errType, "errorMessage": msg})
}
