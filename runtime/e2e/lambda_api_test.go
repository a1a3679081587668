package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// The real AWS SDK, pointed at the gateway, invokes Nimbus functions.
func TestAWSSDKInvoke(t *testing.T) {
	_, gw := gateway(t)
	deploy(t, model.Function{Name: "sdk", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: time.Second})
	client := lambda.New(lambda.Options{
		BaseEndpoint: aws.String(gw.URL),
		Region:       "local",
		Credentials:  operatorCredentials(t, gw),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("arn:aws:lambda:local:000000000000:function:sdk"),
		Payload:      []byte(`{"action":"echo","value":"from the sdk"}`),
		LogType:      types.LogTypeTail,
	})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	var body map[string]any
	if err := json.Unmarshal(out.Payload, &body); err != nil || body["echo"] != "from the sdk" {
		t.Errorf("payload %s (%v)", out.Payload, err)
	}
	if out.StatusCode != 200 || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Errorf("status %d, function error %v, version %v", out.StatusCode, aws.ToString(out.FunctionError), aws.ToString(out.ExecutedVersion))
	}
	logs, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if !strings.Contains(string(logs), "REPORT RequestId:") {
		t.Errorf("LogType Tail should return the REPORT line, got %q", logs)
	}

	// `aws lambda invoke --function-name sdk out.json`: no payload. The
	// signature holds and the handler gets {} (an action it does not know).
	out, err = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk")})
	if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "unknown action") {
		t.Errorf("an invoke without a payload: %v %v %s; want the handler to run with {}", err, aws.ToString(out.FunctionError), out.Payload)
	}

	out, err = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk"), Payload: []byte(`{"action":"error","value":"sdk"}`)})
	if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "something went wrong: sdk") {
		t.Errorf("function error: %v %v %s", err, aws.ToString(out.FunctionError), out.Payload)
	}

	out, err = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk"), Payload: []byte(`{"action":"sleep","n":3000}`)})
	if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "Sandbox.Timedout") {
		t.Errorf("timeout: %v %v %s", err, aws.ToString(out.FunctionError), out.Payload)
	}

	if _, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk"), InvocationType: types.InvocationTypeDryRun}); err != nil {
		t.Errorf("DryRun: %v", err)
	}

	// Event: accepted at once, run in the background.
	before := usageCount(t, gw, "sdk")
	out, err = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"action":"echo","value":"async"}`)})
	if err != nil || out.StatusCode != 202 {
		t.Fatalf("Event invocation: %v %v", err, out)
	}
	// Through NATS, and past the previous call's timeout, which restarts
	// the handler.
	for i := 0; i < 1200 && usageCount(t, gw, "sdk") <= before; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if usageCount(t, gw, "sdk") <= before {
		t.Error("the asynchronous invocation never ran")
	}

	_, err = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("nope"), Payload: []byte(`{}`)})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Errorf("unknown function: want ResourceNotFoundException, got %v", err)
	}
}

func usageCount(t *testing.T, gw *testenv.Gateway, fn string) int64 {
	t.Helper()
	resp, err := gw.Do(http.MethodGet, "/v1/usage", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var u struct {
		Functions []struct {
			Function    string `json:"function"`
			Invocations int64  `json:"invocations"`
		} `json:"functions"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&u)
	for _, f := range u.Functions {
		if f.Function == fn {
			return f.Invocations
		}
	}
	return 0
}
