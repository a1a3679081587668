package refusal

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

func TestWriteSpeaksTheCallersDialect(t *testing.T) {
	native := httptest.NewRecorder()
	Write(native, Native, New(http.StatusNotFound, "ResourceNotFoundException", "no function f; apply it first"))
	var body map[string]string
	_ = json.Unmarshal(native.Body.Bytes(), &body)
	if native.Code != http.StatusNotFound || body["errorType"] != "ResourceNotFoundException" || body["errorMessage"] != "no function f; apply it first" {
		t.Errorf("native refusal: %d %v", native.Code, body)
	}
	if native.Header().Get("Retry-After") != "" || native.Header().Get("Content-Type") != "application/json" {
		t.Errorf("native refusal headers: %v", native.Header())
	}

	lambda := httptest.NewRecorder()
	Write(lambda, Lambda, New(http.StatusTooManyRequests, "TooManyRequestsException", "slow down"))
	body = nil
	_ = json.Unmarshal(lambda.Body.Bytes(), &body)
	if body["__type"] != "TooManyRequestsException" || body["message"] != "slow down" || lambda.Header().Get("X-Amzn-Errortype") != "TooManyRequestsException" {
		t.Errorf("Lambda refusal: %v %v", lambda.Header(), body)
	}
	if lambda.Header().Get("Retry-After") != "1" || lambda.Header().Get(protocol.HeaderNotStarted) != "true" {
		t.Errorf("a throttle must say when to retry and that nothing started: %v", lambda.Header())
	}

	unauthorized := httptest.NewRecorder()
	Write(unauthorized, Native, New(http.StatusUnauthorized, "UnrecognizedClientException", "who are you"))
	if unauthorized.Header().Get("WWW-Authenticate") == "" {
		t.Error("a 401 must name the schemes it accepts")
	}
}

func TestFirst(t *testing.T) {
	second := New(http.StatusForbidden, "AccessDeniedException", "no")
	if First(nil, second, New(http.StatusBadRequest, "x", "y")) != second || First(nil, nil) != nil {
		t.Error("First must return the first refusal that is not nil")
	}
}
