package invoke

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// ServeRoute turns an HTTP request on a nimbus_http_route into an API
// Gateway v2 (payload format 2.0) event, invokes the function and turns its
// answer back into an HTTP response.
func (s *Service) ServeRoute(w http.ResponseWriter, r *http.Request) {
	route, allowed := matchRoute(s.registry.Routes(), r)
	synced, _ := s.registry.Status()
	switch {
	case route == nil && !synced:
		refusal.Write(w, refusal.Native, s.registry.NotSynced())
		return
	case route == nil && allowed != nil:
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		refusal.Write(w, refusal.Native, refusal.New(http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("%s is not routed for %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allowed, ", "))))
		return
	case route == nil:
		refusal.Write(w, refusal.Native, refusal.New(http.StatusNotFound, "NotFound", fmt.Sprintf("no route for %s %s%s", r.Method, hostOnly(r.Host), r.URL.Path)))
		return
	}
	c, refused := s.routeCaller(r, route)
	if refused != nil {
		refusal.Write(w, refusal.Native, refused)
		return
	}
	body, release, bad := s.readPayload(w, r, c)
	if bad != nil {
		refusal.Write(w, refusal.Native, bad)
		return
	}
	defer release()
	event, err := json.Marshal(apiGatewayEvent(r, route, body))
	if err != nil {
		refusal.Write(w, refusal.Native, refusal.New(http.StatusInternalServerError, "ServiceException", err.Error()))
		return
	}
	inv := s.Run(r.Context(), c, route.Function, event, false)
	if inv.Refused != nil {
		refusal.Write(w, refusal.Native, inv.Refused)
		return
	}
	a := inv.Answer
	switch {
	case inv.Out.ErrorType == protocol.ErrTimeout:
		refusal.Write(w, refusal.Native, refusal.New(http.StatusGatewayTimeout, protocol.ErrTimeout, "the function did not answer within its timeout"))
		return
	case a.FunctionFailed():
		// As API Gateway does: the details stay in the function's logs.
		refusal.Write(w, refusal.Native, refusal.New(http.StatusBadGateway, "FunctionError",
			"the function failed; its logs have the details (request "+a.Header.Get(protocol.HeaderRequestID)+")"))
		return
	}
	if bad := writeFunctionResponse(w, a.Body, hostOnly(r.Host)); bad != nil {
		refusal.Write(w, refusal.Native, bad)
	}
}

// routeCaller authenticates a route's caller as the route's authorization
// wants: anyone (NONE), an access key's token (API_KEY) or a SigV4
// signature for execute-api (AWS_IAM). The key must be allowed to invoke
// the route's function.
func (s *Service) routeCaller(r *http.Request, route *kvstore.Route) (*auth.Caller, *refusal.Error) {
	var kinds auth.Kinds
	switch route.EffectiveAuthorization() {
	case kvstore.RouteAuthNone:
		return auth.Internal("public route " + route.ID), nil
	case kvstore.RouteAuthAPIKey:
		kinds = auth.Kinds{Bearer: true, APIKeyHeader: true}
	default:
		kinds = auth.Kinds{SigV4Services: auth.RouteServices}
	}
	return s.auth.Identify(r, kinds)
}

// credentialHeaders carry a caller's credentials. A route with
// authorization does not pass them to the function: a token would let
// the function act as its caller.
var credentialHeaders = map[string]bool{"authorization": true, "x-api-key": true}

// matchRoute finds the most specific route for the request, or the methods
// allowed on its path when only the method does not match.
func matchRoute(routes []kvstore.Route, r *http.Request) (*kvstore.Route, []string) {
	host := hostOnly(r.Host)
	var allowed []string
	for i := range routes {
		rt := &routes[i]
		if rt.Host != "" && !strings.EqualFold(rt.Host, host) {
			continue
		}
		if rt.Match == "exact" && r.URL.Path != rt.Path {
			continue
		}
		if rt.Match != "exact" && !pathHasPrefix(r.URL.Path, rt.Path) {
			continue
		}
		if len(rt.Methods) == 0 {
			return rt, nil
		}
		for _, m := range rt.Methods {
			if strings.EqualFold(m, r.Method) {
				return rt, nil
			}
		}
		allowed = append(allowed, rt.Methods...)
	}
	return nil, allowed
}

// pathHasPrefix matches whole segments: /api matches /api and /api/x, not /apix.
func pathHasPrefix(path, prefix string) bool {
	if prefix == "/" || path == prefix {
		return true
	}
	return strings.HasPrefix(path, strings.TrimSuffix(prefix, "/")+"/")
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// apiGatewayEvent builds the API Gateway v2 event Lambda handlers expect.
func apiGatewayEvent(r *http.Request, route *kvstore.Route, body []byte) map[string]any {
	headers := map[string]string{}
	var cookies []string
	for k, v := range r.Header {
		if strings.EqualFold(k, "Cookie") {
			for _, c := range v {
				for _, part := range strings.Split(c, ";") {
					if part = strings.TrimSpace(part); part != "" {
						cookies = append(cookies, part)
					}
				}
			}
			continue
		}
		if credentialHeaders[strings.ToLower(k)] && route.EffectiveAuthorization() != kvstore.RouteAuthNone {
			continue
		}
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",")
	}
	now := time.Now()
	event := map[string]any{
		"version":               "2.0",
		"routeKey":              route.ID,
		"rawPath":               r.URL.Path,
		"rawQueryString":        r.URL.RawQuery,
		"headers":               headers,
		"queryStringParameters": query,
		"requestContext": map[string]any{
			"domainName": hostOnly(r.Host),
			"http": map[string]any{
				"method": r.Method, "path": r.URL.Path, "protocol": r.Proto,
				"sourceIp": hostOnly(r.RemoteAddr), "userAgent": r.UserAgent(),
			},
			"requestId": protocol.NewRequestID(),
			"routeKey":  route.ID,
			"stage":     "$default",
			"time":      now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			"timeEpoch": now.UnixMilli(),
		},
		"isBase64Encoded": false,
	}
	if len(cookies) > 0 {
		event["cookies"] = cookies
	}
	if len(body) > 0 {
		if utf8.Valid(body) {
			event["body"] = string(body)
		} else {
			event["body"] = base64.StdEncoding.EncodeToString(body)
			event["isBase64Encoded"] = true
		}
	}
	return event
}

// writeFunctionResponse follows payload format 2.0: an object with
// statusCode is a full response; anything else is a 200 JSON body. A
// response it cannot honour (a status outside 200-599, a body flagged
// base64 that is not) is refused before anything is written: the caller
// answers 502 with it, as API Gateway does for a malformed proxy response.
func writeFunctionResponse(w http.ResponseWriter, body []byte, host string) *refusal.Error {
	var resp struct {
		StatusCode      int               `json:"statusCode"`
		Headers         map[string]string `json:"headers"`
		Cookies         []string          `json:"cookies"`
		Body            *string           `json:"body"`
		IsBase64Encoded bool              `json:"isBase64Encoded"`
	}
	if json.Unmarshal(body, &resp) != nil || resp.StatusCode == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		return nil
	}
	malformed := func(msg string) *refusal.Error {
		return refusal.New(http.StatusBadGateway, protocol.ErrInvalidResponseHTTP, "the function's response is malformed: "+msg)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 599 {
		return malformed(fmt.Sprintf("statusCode %d is not an HTTP status from 200 to 599", resp.StatusCode))
	}
	out := []byte{}
	if resp.Body != nil {
		out = []byte(*resp.Body)
		if resp.IsBase64Encoded {
			decoded, err := base64.StdEncoding.DecodeString(*resp.Body)
			if err != nil {
				return malformed("isBase64Encoded is true but body is not base64: " + err.Error())
			}
			out = decoded
		}
	}
	for k, v := range resp.Headers {
		if strings.EqualFold(k, "Set-Cookie") {
			resp.Cookies = append(resp.Cookies, v)
			continue
		}
		w.Header().Set(k, v)
	}
	for _, c := range resp.Cookies {
		if cookieStaysOnHost(c, host) {
			w.Header().Add("Set-Cookie", c)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
	return nil
}

// cookieStaysOnHost reports whether a cookie a route's function sets is
// the route's own: one without a Domain attribute (the browser keeps it
// for this host alone) or whose Domain is this very host. A Domain wider
// than the host (a parent domain) would reach every other tenant's routes
// under it, so the gateway drops such a cookie, and one it cannot read.
func cookieStaysOnHost(setCookie, host string) bool {
	c, err := http.ParseSetCookie(setCookie)
	if err != nil {
		return false
	}
	return c.Domain == "" || strings.EqualFold(strings.TrimPrefix(c.Domain, "."), host)
}
