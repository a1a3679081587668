package invoke

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth/sigv4"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/refusal"
)

// lambdaAPI serves Lambda's Invoke API of a request path that knows one
// access key, allowed to invoke the functions invoke names, and no
// function.
func lambdaAPI(t *testing.T, invoke ...string) (srv *httptest.Server, id, secret string) {
	t.Helper()
	id, secret, _ = accesskey.New()
	s := syncedService(Options{}, auth.Options{})
	key := kvstore.AccessKey{ID: id, Secret: secret, Enabled: true, Invoke: invoke}
	s.registry.Apply(kvstore.AccessKeysPrefix, consulapi.KVPairs{{Key: kvstore.AccessKeyKey(id), Value: key.Encode()}})
	s.events = func(context.Context, *auth.Caller, string, string, []byte, func()) *refusal.Error { return nil }
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", s.ServeLambdaInvoke)
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, id, secret
}

func sdkClient(srv *httptest.Server, id, secret string) *lambda.Client {
	return lambda.New(lambda.Options{
		BaseEndpoint: aws.String(srv.URL), Region: "local",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, nil
		}),
		RetryMaxAttempts: 1,
	})
}

func errorCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// `aws lambda invoke --function-name f out.json` sends no payload: the
// signature covers the empty body, and the gateway must check it against
// that, not against the {} the function gets. The function does not exist
// here, so a call whose signature holds gets ResourceNotFound.
func TestSDKInvokeWithoutPayload(t *testing.T) {
	srv, id, secret := lambdaAPI(t, "*")
	client := sdkClient(srv, id, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, typ := range []types.InvocationType{types.InvocationTypeRequestResponse, types.InvocationTypeEvent, types.InvocationTypeDryRun} {
		_, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), InvocationType: typ})
		if code := errorCode(err); code != "ResourceNotFoundException" {
			t.Errorf("%s without a payload: %v (%s); want the signature to hold and ResourceNotFoundException", typ, err, code)
		}
	}
}

// An Event invocation proves its signature before the gateway says what
// the key may invoke or which functions exist: a caller who knows only a
// key's id (it is not secret) learns nothing.
func TestEventChecksTheSignatureFirst(t *testing.T) {
	srv, id, _ := lambdaAPI(t, "orders-*")
	client := sdkClient(srv, id, strings.Repeat("w", 40))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, fn := range []string{"billing", "orders-eu"} {
		_, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
		if code := errorCode(err); code != "InvalidSignatureException" {
			t.Errorf("an Event to %s with a wrong secret: %v (%s); want InvalidSignatureException before anything else", fn, err, code)
		}
	}
}

// A replayed request cannot add or change an x-amz-* header the signature
// does not cover (asking for the log tail, turning a call into an Event).
func TestUnsignedAmzHeadersAreRefused(t *testing.T) {
	srv, id, secret := lambdaAPI(t, "*")
	body := []byte(`{"a":1}`)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/2015-03-31/functions/f/invocations", bytes.NewReader(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, req,
		sigv4.PayloadHash(body), "lambda", "local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Log-Type", "Tail")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Amzn-Errortype") != "InvalidSignatureException" {
		t.Errorf("a signed request with an unsigned X-Amz-Log-Type added: %d %s; want 401 InvalidSignatureException",
			resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
	}
}
