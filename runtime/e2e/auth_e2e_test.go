package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

// staticCredentials are an access key as an AWS SDK holds it.
func staticCredentials(id, secret string) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, Source: "nimbus_access_key"}, nil
	})
}

// operatorCredentials are the gateway's operator key, for the SDK.
func operatorCredentials(t *testing.T, gw *testenv.Gateway) aws.CredentialsProvider {
	t.Helper()
	id, secret, err := accesskey.ParseToken(gw.Token())
	if err != nil {
		t.Fatal(err)
	}
	return staticCredentials(id, secret)
}

// testKey is an access key written to Consul as nimbus_access_key writes
// it.
type testKey struct{ kvstore.AccessKey }

func putKey(t *testing.T, env *testenv.Env, k kvstore.AccessKey) testKey {
	t.Helper()
	if k.ID == "" {
		id, secret, err := accesskey.New()
		if err != nil {
			t.Fatal(err)
		}
		k.ID, k.Secret = id, secret
	}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AccessKeyKey(k.ID), Value: k.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = env.Consul.KV().Delete(kvstore.AccessKeyKey(k.ID), nil) })
	return testKey{k}
}

func (k testKey) bearer() string { return "Bearer " + accesskey.Token(k.ID, k.Secret) }

// call sends one request with a header set (nil: no credentials) and
// decodes the JSON answer.
func call(t *testing.T, method, url string, body []byte, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

// waitStatus polls until a request gets status: the gateway learns of
// keys through a Consul blocking query, within moments.
func waitStatus(t *testing.T, method, url string, header map[string]string, status int) map[string]any {
	t.Helper()
	var got int
	var body map[string]any
	for i := 0; i < 100; i++ {
		if got, body = call(t, method, url, []byte(`{"action":"echo","value":"k"}`), header); got == status {
			return body
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s %s: want %d, still %d %v", method, url, status, got, body)
	return nil
}

// apiErrorCode is the AWS error code an SDK decoded.
func apiErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// skewedSigner signs as a caller whose clock is off.
type skewedSigner struct{ by time.Duration }

func (s skewedSigner) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, at time.Time, opts ...func(*v4.SignerOptions)) error {
	return v4.NewSigner().SignHTTP(ctx, creds, r, payloadHash, service, region, at.Add(s.by), opts...)
}

// tamperingClient changes one byte of every body after it was signed, as
// a man in the middle would.
type tamperingClient struct{}

func (tamperingClient) Do(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	if i := bytes.Index(body, []byte("1")); i >= 0 {
		body[i] = '2'
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return http.DefaultClient.Do(r)
}

// The Lambda API verifies SigV4 as AWS does, tried with the real AWS SDK:
// the right key invokes, and every way of getting it wrong is refused in
// the error shapes the SDK decodes.
func TestLambdaAPISigV4WithTheAWSSDK(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "signed", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 5 * time.Second})
	allowed := putKey(t, env, kvstore.AccessKey{Enabled: true, Invoke: []string{"sign*"}})
	other := putKey(t, env, kvstore.AccessKey{Enabled: true, Invoke: []string{"billing-*"}})
	waitStatus(t, http.MethodPost, gw.URL+"/v1/functions/signed/invoke", map[string]string{"Authorization": allowed.bearer()}, http.StatusOK)
	waitStatus(t, http.MethodPost, gw.URL+"/v1/functions/signed/invoke", map[string]string{"Authorization": other.bearer()}, http.StatusForbidden)

	invoke := func(creds aws.CredentialsProvider, tweak func(*lambda.Options)) (string, error) {
		o := lambda.Options{BaseEndpoint: aws.String(gw.URL), Region: "eu-west-3", Credentials: creds, RetryMaxAttempts: 1}
		if tweak != nil {
			tweak(&o)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := lambda.New(o).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("signed"), Payload: []byte(`{"action":"echo","value":"v1"}`)})
		if err != nil {
			return "", err
		}
		return string(out.Payload), nil
	}
	good := staticCredentials(allowed.ID, allowed.Secret)
	if payload, err := invoke(good, nil); err != nil || !strings.Contains(payload, `"v1"`) {
		t.Fatalf("a good key: %v %s", err, payload)
	}
	cases := []struct {
		name  string
		creds aws.CredentialsProvider
		tweak func(*lambda.Options)
		code  string
		text  string
	}{
		{"unsigned", aws.AnonymousCredentials{}, nil, "UnrecognizedClientException", "no credentials"},
		{"unknown key", staticCredentials("NIMBAAAAAAAAAAAAAAAA", allowed.Secret), nil, "UnrecognizedClientException", "does not exist"},
		{"wrong secret", staticCredentials(allowed.ID, strings.Repeat("x", 40)), nil, "InvalidSignatureException", "does not match"},
		{"no right to the function", staticCredentials(other.ID, other.Secret), nil, "AccessDeniedException", "may not invoke signed"},
		{"clock 20 minutes slow", good, func(o *lambda.Options) { o.HTTPSignerV4 = skewedSigner{-20 * time.Minute} }, "InvalidSignatureException", "Signature expired"},
		{"clock 20 minutes fast", good, func(o *lambda.Options) { o.HTTPSignerV4 = skewedSigner{20 * time.Minute} }, "InvalidSignatureException", "Signature expired"},
		{"tampered body", good, func(o *lambda.Options) { o.HTTPClient = tamperingClient{} }, "InvalidSignatureException", "does not match"},
		{"signed for another service", good, func(o *lambda.Options) {
			o.HTTPSignerV4 = serviceSigner{"s3"}
		}, "InvalidSignatureException", `"s3"`},
	}
	for _, c := range cases {
		payload, err := invoke(c.creds, c.tweak)
		if code := apiErrorCode(err); code != c.code || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: want %s (%q), got %v %s", c.name, c.code, c.text, err, payload)
		} else {
			t.Logf("%-28s %v", c.name, err)
		}
	}

	// Disabling the key takes effect at once, without a restart; so does
	// enabling it again, and deleting it.
	disabled := allowed.AccessKey
	disabled.Enabled = false
	putKey(t, env, disabled)
	waitStatus(t, http.MethodPost, gw.URL+"/v1/functions/signed/invoke", map[string]string{"Authorization": allowed.bearer()}, http.StatusUnauthorized)
	if _, err := invoke(good, nil); apiErrorCode(err) != "UnrecognizedClientException" || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("a disabled key: %v", err)
	}
	putKey(t, env, allowed.AccessKey)
	waitStatus(t, http.MethodPost, gw.URL+"/v1/functions/signed/invoke", map[string]string{"Authorization": allowed.bearer()}, http.StatusOK)
	_, _ = env.Consul.KV().Delete(kvstore.AccessKeyKey(allowed.ID), nil)
	waitStatus(t, http.MethodPost, gw.URL+"/v1/functions/signed/invoke", map[string]string{"Authorization": allowed.bearer()}, http.StatusUnauthorized)
}

// serviceSigner signs for another service's scope.
type serviceSigner struct{ service string }

func (s serviceSigner) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, _, region string, at time.Time, opts ...func(*v4.SignerOptions)) error {
	return v4.NewSigner().SignHTTP(ctx, creds, r, payloadHash, s.service, region, at, opts...)
}

// The native API takes a bearer token or SigV4; the operations endpoints
// and function descriptions need their rights; /healthz stays open.
func TestNativeAPIAndOperationsNeedTheirRights(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "native", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 5 * time.Second})
	invoker := putKey(t, env, kvstore.AccessKey{Enabled: true, Invoke: []string{"native"}})
	ops := putKey(t, env, kvstore.AccessKey{Enabled: true, ReadOperations: true})
	invokeURL := gw.URL + "/v1/functions/native/invoke"
	waitStatus(t, http.MethodPost, invokeURL, map[string]string{"Authorization": invoker.bearer()}, http.StatusOK)

	// SigV4 on the native API, signed by the SDK's signer for "lambda".
	body := []byte(`{"action":"echo","value":"native"}`)
	req, _ := http.NewRequest(http.MethodPost, invokeURL, bytes.NewReader(body))
	creds := aws.Credentials{AccessKeyID: invoker.ID, SecretAccessKey: invoker.Secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, sha256Hex(body), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), "native") {
		t.Errorf("SigV4 on the native API: %d %s", resp.StatusCode, answer)
	}

	for _, c := range []struct {
		name, method, path string
		header             map[string]string
		status             int
		errType            string
	}{
		{"invoke without credentials", http.MethodPost, "/v1/functions/native/invoke", nil, 401, "UnrecognizedClientException"},
		{"invoke with a malformed token", http.MethodPost, "/v1/functions/native/invoke", map[string]string{"Authorization": "Bearer nope"}, 401, "UnrecognizedClientException"},
		{"invoke with the wrong secret", http.MethodPost, "/v1/functions/native/invoke", map[string]string{"Authorization": "Bearer " + accesskey.Token(invoker.ID, strings.Repeat("y", 40))}, 401, "UnrecognizedClientException"},
		{"invoke by the operations key", http.MethodPost, "/v1/functions/native/invoke", map[string]string{"Authorization": ops.bearer()}, 403, "AccessDeniedException"},
		{"describe without credentials", http.MethodGet, "/v1/functions/native", nil, 401, "UnrecognizedClientException"},
		{"describe by the invoker", http.MethodGet, "/v1/functions/native", map[string]string{"Authorization": invoker.bearer()}, 200, ""},
		{"describe by the operations key", http.MethodGet, "/v1/functions/native", map[string]string{"Authorization": ops.bearer()}, 200, ""},
		{"metrics without credentials", http.MethodGet, "/metrics", nil, 401, "UnrecognizedClientException"},
		{"metrics by the invoker", http.MethodGet, "/metrics", map[string]string{"Authorization": invoker.bearer()}, 403, "AccessDeniedException"},
		{"metrics by the operations key", http.MethodGet, "/metrics", map[string]string{"Authorization": ops.bearer()}, 200, ""},
		{"usage without credentials", http.MethodGet, "/v1/usage", nil, 401, "UnrecognizedClientException"},
		{"usage by the invoker", http.MethodGet, "/v1/usage", map[string]string{"Authorization": invoker.bearer()}, 403, "AccessDeniedException"},
		{"usage by the operations key", http.MethodGet, "/v1/usage", map[string]string{"Authorization": ops.bearer()}, 200, ""},
		{"health without credentials", http.MethodGet, "/healthz", nil, 200, ""},
		{"scheduled run of a launch Nomad does not know", http.MethodPost, "/v1/scheduled-runs", nil, 403, "AccessDeniedException"},
	} {
		var reqBody []byte
		if c.path == "/v1/scheduled-runs" {
			reqBody = []byte(`{"launch":"nimbus-sched-forged/periodic-1700000000"}`)
		}
		status, got := call(t, c.method, gw.URL+c.path, reqBody, c.header)
		if status != c.status || (c.errType != "" && got["errorType"] != c.errType) {
			t.Errorf("%s: want %d %s, got %d %v", c.name, c.status, c.errType, status, got)
		} else if c.errType != "" {
			t.Logf("%-48s %d %v", c.name, status, got["errorMessage"])
		}
	}
	// A function's own job is no schedule's launch.
	if status, got := call(t, http.MethodPost, gw.URL+"/v1/scheduled-runs", []byte(`{"launch":"nimbus-fn-native"}`), nil); status != http.StatusForbidden {
		t.Errorf("a function's job delivered as a scheduled run: %d %v", status, got)
	}
}

// Uploading and downloading code takes a key with upload_artifacts;
// Nomad clients download with a signed URL, which works for its own
// artifact only and cannot be forged from the digest.
func TestArtifactsNeedAKeyOrASignedURL(t *testing.T) {
	env, gw := gateway(t)
	uploader := putKey(t, env, kvstore.AccessKey{Enabled: true, UploadArtifacts: true})
	invoker := putKey(t, env, kvstore.AccessKey{Enabled: true, Invoke: []string{"*"}})
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/bootstrap", []byte("#!/bin/sh\necho artifact-auth\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pkg, err := packaging.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/artifacts/sha256/" + pkg.SHA256
	waitStatus(t, http.MethodGet, gw.URL+"/v1/functions/none", map[string]string{"Authorization": invoker.bearer()}, http.StatusNotFound)
	for _, c := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"upload without credentials", nil, 401},
		{"upload by a key without upload_artifacts", map[string]string{"Authorization": invoker.bearer()}, 403},
		{"upload by the uploader", map[string]string{"Authorization": uploader.bearer()}, 201},
	} {
		if status, got := call(t, http.MethodPut, gw.URL+path, pkg.Zip, c.header); status != c.status {
			t.Errorf("%s: want %d, got %d %v", c.name, c.status, status, got)
		}
	}
	signed := upload(t, env, gw, pkg)
	if !strings.Contains(signed, "X-Nimbus-Signature=") || !strings.Contains(signed, "X-Nimbus-Expires=") {
		t.Fatalf("the signed URL %s lacks its signature or expiry", signed)
	}
	other, _ := packaging.ZipDir(fx.goSource)
	upload(t, env, gw, other)
	query := signed[strings.Index(signed, "?"):]
	for _, c := range []struct {
		name   string
		url    string
		status int
	}{
		{"download by digest alone", gw.URL + path, 401},
		{"download with the signed URL", signed, 200},
		{"another artifact with this URL's signature", gw.URL + "/v1/artifacts/sha256/" + other.SHA256 + query, 403},
		{"a forged signature", strings.Replace(signed, "X-Nimbus-Signature=", "X-Nimbus-Signature=00", 1), 403},
		{"a later expiry", strings.Replace(signed, "X-Nimbus-Expires=", "X-Nimbus-Expires=9", 1), 403},
	} {
		if status, got := call(t, http.MethodGet, c.url, nil, nil); status != c.status {
			t.Errorf("%s: want %d, got %d %v", c.name, c.status, status, got)
		}
	}
	if status, got := call(t, http.MethodPost, gw.URL+path+"/url", nil, map[string]string{"Authorization": invoker.bearer()}); status != http.StatusForbidden {
		t.Errorf("a URL signed for a key without upload_artifacts: %d %v", status, got)
	}
}

// An instance runs invocations from the gateway only: a caller that
// reaches its address directly, as anyone on the cluster network can, is
// refused without the key its host made at start, which the gateway reads
// through Nomad and nobody else can.
func TestOnlyTheGatewayInvokesAnInstance(t *testing.T) {
	env, gw := gateway(t)
	deploy(t, model.Function{Name: "keyed", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 5 * time.Second})
	entry := testkit.WaitInstances(context.Background(), t, env.Consul, nomadjob.ServiceName("keyed"), 1)
	if a := invoke(t, gw, "keyed", `{"action":"echo","value":"through the gateway"}`); a.status != http.StatusOK {
		t.Fatalf("through the gateway: %d %s", a.status, a.raw)
	}
	direct := "http://" + net.JoinHostPort(entry.Service.Address, strconv.Itoa(entry.Service.Port)) + "/invoke"
	if status, _ := call(t, http.MethodGet, strings.TrimSuffix(direct, "/invoke")+"/healthz", nil, nil); status != http.StatusOK {
		t.Fatalf("control: the instance's /healthz at %s answered %d, so the refusals below prove nothing", direct, status)
	}
	for name, header := range map[string]map[string]string{
		"no key":               nil,
		"a made-up key":        {"X-Nimbus-Instance-Key": strings.Repeat("0", 64)},
		"the operator's token": {"X-Nimbus-Instance-Key": gw.Token(), "Authorization": "Bearer " + gw.Token()},
	} {
		status, got := call(t, http.MethodPost, direct, []byte(`{"action":"echo","value":"direct"}`), header)
		if status != http.StatusUnauthorized || got["errorType"] != "Host.Unauthorized" {
			t.Errorf("a direct call with %s: %d %v; want 401 Host.Unauthorized", name, status, got)
		}
	}
	if a := invoke(t, gw, "keyed", `{"action":"echo","value":"still"}`); a.status != http.StatusOK || a.body["echo"] != "still" {
		t.Errorf("the gateway after the direct calls: %d %s", a.status, a.raw)
	}
	job, _, err := env.Nomad.Jobs().Info(nomadjob.JobID("keyed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if env := job.TaskGroups[0].Tasks[0].Env; env["NIMBUS_INSTANCE_KEY_FILE"] == "" {
		t.Errorf("the function's job does not have its host make an instance key: %v", env)
	}
}

// An auth-less gateway, for local development, serves everyone and says
// so loudly: in its log and in /healthz.
func TestAuthOffIsLoud(t *testing.T) {
	env, shared := gateway(t)
	deploy(t, model.Function{Name: "open", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 5 * time.Second})
	_ = shared
	open, err := env.StartGatewayAs(fx.gatewayBin, "gateway-open", env.Principals.Gateway, "NIMBUS_GATEWAY_AUTH=off")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Stop()
	waitStatus(t, http.MethodPost, open.URL+"/v1/functions/open/invoke", nil, http.StatusOK)
	if status, got := call(t, http.MethodGet, open.URL+"/healthz", nil, nil); status != 200 || !strings.Contains(got["authentication"].(string), "OFF") {
		t.Errorf("/healthz of an open gateway: %d %v", status, got)
	}
	log, _ := os.ReadFile(open.LogPath)
	if !strings.Contains(string(log), "AUTHENTICATION IS OFF") {
		t.Errorf("the open gateway's log does not say it is open:\n%s", log)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
