package host

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/httpclient"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// httpEvent is the part of an API Gateway v2 (HTTP API) event that the
// http runtime turns back into a request.
type httpEvent struct {
	RawPath         string            `json:"rawPath"`
	RawQueryString  string            `json:"rawQueryString"`
	Headers         map[string]string `json:"headers"`
	Cookies         []string          `json:"cookies"`
	Body            string            `json:"body"`
	IsBase64Encoded bool              `json:"isBase64Encoded"`
	RequestContext  struct {
		HTTP struct {
			Method string `json:"method"`
		} `json:"http"`
	} `json:"requestContext"`
}

// httpResult is the API Gateway v2 response shape.
type httpResult struct {
	StatusCode      int               `json:"statusCode"`
	Headers         map[string]string `json:"headers,omitempty"`
	Cookies         []string          `json:"cookies,omitempty"`
	Body            string            `json:"body"`
	IsBase64Encoded bool              `json:"isBase64Encoded"`
}

// proxyClient sends invocations to the handler's own server, once each:
// an invocation is never sent twice. It has no timeout of its own, since
// an invocation may run for as long as its function's timeout: proxyHTTP
// gives every request the invocation's deadline (waitContext), which ends
// it, connecting included.
var proxyClient = httpclient.NewPlain(httpclient.Plain{MaxIdleConnsPerHost: 64, DisableCompression: true})

// proxyHTTP sends the event to the handler's HTTP server. An API Gateway
// v2 event becomes that request; any other event is POSTed to / as JSON and
// the response body is the result.
func (h *Host) proxyHTTP(p *handlerProc, inv *invocation) outcome {
	// With one invocation at a time, the handler's output is attributable.
	if h.cfg.Concurrency == 1 {
		p.current.Store(inv)
		defer func() {
			p.drainOutput()
			p.current.Store(nil)
		}()
	}
	ctx, cancel := waitContext(inv.deadline)
	defer cancel()
	req, isEvent, err := buildRequest(ctx, p.port, inv.payload)
	if err != nil {
		return outcome{err: &protocol.ErrorBody{ErrorType: protocol.ErrInvalidRequest, ErrorMessage: err.Error()}}
	}
	req.Header.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	req.Header.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
	req.Header.Set("Lambda-Runtime-Trace-Id", inv.traceID)

	resp, err := proxyClient.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return outcome{err: h.timeoutError(inv)}
		case p.hasExited():
			return outcome{err: h.exitOutcome(p, inv.id)}
		default:
			return outcome{err: &protocol.ErrorBody{ErrorType: protocol.ErrHandlerUnreachable, ErrorMessage: fmt.Sprintf("RequestId: %s Error: the handler's HTTP server did not answer: %v", inv.id, err)}}
		}
	}
	defer func() { _ = resp.Body.Close() }()
	body, tooLarge, err := readLimited(resp.Body)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return outcome{err: h.timeoutError(inv)}
	case err != nil:
		return outcome{err: &protocol.ErrorBody{ErrorType: protocol.ErrInvalidResponseHTTP, ErrorMessage: "reading the handler's response: " + err.Error()}}
	case tooLarge:
		return outcome{err: &protocol.ErrorBody{ErrorType: protocol.ErrResponseTooLarge, ErrorMessage: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", protocol.MaxPayloadBytes)}}
	}
	if !isEvent {
		return outcome{body: body}
	}
	res := httpResult{StatusCode: resp.StatusCode, Headers: map[string]string{}}
	for k, v := range resp.Header {
		if strings.EqualFold(k, "Set-Cookie") {
			res.Cookies = append(res.Cookies, v...)
			continue
		}
		res.Headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	if utf8.Valid(body) {
		res.Body = string(body)
	} else {
		res.Body, res.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	out, err := json.Marshal(res)
	if err != nil {
		return outcome{err: &protocol.ErrorBody{ErrorType: protocol.ErrInvalidResponseHTTP, ErrorMessage: err.Error()}}
	}
	return outcome{body: out}
}

func buildRequest(ctx context.Context, port int, payload []byte) (*http.Request, bool, error) {
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	var ev httpEvent
	if json.Unmarshal(payload, &ev) == nil && ev.RequestContext.HTTP.Method != "" {
		body := []byte(ev.Body)
		if ev.IsBase64Encoded {
			var err error
			if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
				return nil, true, fmt.Errorf("event body is not valid base64: %w", err)
			}
		}
		path := ev.RawPath
		if path == "" {
			path = "/"
		}
		u := base + (&url.URL{Path: path}).EscapedPath()
		if ev.RawQueryString != "" {
			u += "?" + ev.RawQueryString
		}
		req, err := http.NewRequestWithContext(ctx, ev.RequestContext.HTTP.Method, u, bytes.NewReader(body))
		if err != nil {
			return nil, true, err
		}
		for k, v := range ev.Headers {
			req.Header.Set(k, v)
		}
		for _, c := range ev.Cookies {
			req.Header.Add("Cookie", c)
		}
		return req, true, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/", io.NopCloser(bytes.NewReader(payload)))
	if err != nil {
		return nil, false, err
	}
	req.ContentLength = int64(len(payload))
	req.Header.Set("Content-Type", "application/json")
	return req, false, nil
}
