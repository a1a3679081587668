package host

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// Runtime API paths (version 2018-06-01).
const runtimeAPIPrefix = "/2018-06-01/runtime"

// runtimeAPI serves the AWS Lambda Runtime API to one handler process.
func (h *Host) runtimeAPI(p *handlerProc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+runtimeAPIPrefix+"/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		// The first call to next ends the handler's init.
		p.markInit()
		select {
		case inv := <-p.next:
			hdr := w.Header()
			hdr.Set("Content-Type", "application/json")
			hdr.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			hdr.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
			hdr.Set("Lambda-Runtime-Invoked-Function-Arn", h.invokedARN(inv))
			hdr.Set("Lambda-Runtime-Trace-Id", inv.traceID)
			if inv.clientContext != "" {
				hdr.Set("Lambda-Runtime-Client-Context", inv.clientContext)
			}
			if inv.identity != "" {
				hdr.Set("Lambda-Runtime-Cognito-Identity", inv.identity)
			}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(inv.payload)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("POST "+runtimeAPIPrefix+"/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		inv, ok := h.invocationFor(w, r, p)
		if !ok {
			return
		}
		body, tooLarge, err := readLimited(r.Body)
		switch {
		case err != nil:
			apiError(w, http.StatusBadRequest, "InvalidRequest", "reading the response: "+err.Error())
			return
		case tooLarge:
			inv.finish(outcome{err: &protocol.ErrorBody{
				ErrorType:    protocol.ErrResponseTooLarge,
				ErrorMessage: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", protocol.MaxPayloadBytes),
			}})
			apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", protocol.MaxPayloadBytes))
			return
		}
		// A streamed response can end in an error, announced in trailers.
		if errType := r.Trailer.Get("Lambda-Runtime-Function-Error-Type"); errType != "" {
			inv.finish(outcome{err: &protocol.ErrorBody{ErrorType: errType, ErrorMessage: r.Trailer.Get("Lambda-Runtime-Function-Error-Body")}})
		} else {
			inv.finish(outcome{body: body})
		}
		accepted(w)
	})
	mux.HandleFunc("POST "+runtimeAPIPrefix+"/invocation/{id}/error", func(w http.ResponseWriter, r *http.Request) {
		inv, ok := h.invocationFor(w, r, p)
		if !ok {
			return
		}
		inv.finish(outcome{err: decodeError(r, "Function.Unhandled")})
		accepted(w)
	})
	mux.HandleFunc("POST "+runtimeAPIPrefix+"/init/error", func(w http.ResponseWriter, r *http.Request) {
		p.initErr.Store(decodeError(r, protocol.ErrInit))
		accepted(w)
	})
	return mux
}

// invocationFor finds the invocation in flight that the request names.
func (h *Host) invocationFor(w http.ResponseWriter, r *http.Request, p *handlerProc) (*invocation, bool) {
	id := r.PathValue("id")
	inv := p.current.Load()
	if inv == nil || inv.id != id {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", fmt.Sprintf("no invocation %q is in flight", id))
		return nil, false
	}
	return inv, true
}

// decodeError reads an error report; a body that is not Lambda's error
// shape is kept as the message.
func decodeError(r *http.Request, fallbackType string) *protocol.ErrorBody {
	raw, _, _ := readLimited(r.Body)
	var eb protocol.ErrorBody
	if err := json.Unmarshal(raw, &eb); err != nil || (eb.ErrorMessage == "" && eb.ErrorType == "") {
		eb = protocol.ErrorBody{ErrorMessage: string(raw)}
	}
	if eb.ErrorType == "" {
		eb.ErrorType = r.Header.Get("Lambda-Runtime-Function-Error-Type")
	}
	if eb.ErrorType == "" {
		eb.ErrorType = fallbackType
	}
	return &eb
}

// readLimited reads at most protocol.MaxPayloadBytes and says whether there was more.
func readLimited(r io.Reader) ([]byte, bool, error) {
	body, err := io.ReadAll(io.LimitReader(r, protocol.MaxPayloadBytes+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > protocol.MaxPayloadBytes {
		return nil, true, nil
	}
	return body, false, nil
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

func apiError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(protocol.ErrorBody{ErrorMessage: msg, ErrorType: errType}.Marshal())
}
