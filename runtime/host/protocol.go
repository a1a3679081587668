package host

import (
	"net/http"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// WriteError answers a request the host itself refuses (not a function
// error): a 4xx/5xx status with a JSON body. A warm pool's instance
// (cmd/nimbus-host) refuses with it too.
func WriteError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(protocol.HeaderProtocol, protocol.Version)
	w.Header().Set(protocol.HeaderErrorType, errType)
	w.WriteHeader(status)
	_, _ = w.Write(protocol.ErrorBody{ErrorMessage: msg, ErrorType: errType}.Marshal())
}
