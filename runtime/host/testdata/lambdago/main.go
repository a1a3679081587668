// Command lambdago is a Lambda handler built with the real aws-lambda-go
// library; the event's "action" picks its behaviour.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string `json:"action"`
	Value  string `json:"value"`
	N      int    `json:"n"`
	// Records is a batch of an event source, which it consumes whole.
	Records []json.RawMessage `json:"Records"`
	// RouteKey and Body are an HTTP route's API Gateway event, whose body
	// carries the action, so that a route reaches every action too.
	RouteKey string `json:"routeKey"`
	Body     string `json:"body"`
	// A schedule's EventBridge-style event carries it in its detail.
	DetailType string          `json:"detail-type"`
	Detail     json.RawMessage `json:"detail"`
}

var started = time.Now()

// calls counts the "flaky" invocations of this process, one at a time.
var calls int

func handle(ctx context.Context, ev event) (map[string]any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	if len(ev.Records) > 0 {
		return map[string]any{"batchItemFailures": []any{}, "records": len(ev.Records)}, nil
	}
	var wrapped []byte
	switch {
	case ev.RouteKey != "":
		// An object without statusCode is the route's 200 JSON body.
		wrapped = []byte(ev.Body)
	case ev.DetailType == "Scheduled Event":
		wrapped = ev.Detail
	}
	if wrapped != nil {
		var inner event
		if err := json.Unmarshal(wrapped, &inner); err != nil || inner.RouteKey != "" || inner.DetailType != "" {
			return nil, fmt.Errorf("the event does not wrap an action: %q", wrapped)
		}
		return handle(ctx, inner)
	}
	switch ev.Action {
	case "echo":
		return map[string]any{"echo": ev.Value, "request_id": lc.AwsRequestID, "arn": lc.InvokedFunctionArn}, nil
	case "error":
		return nil, errors.New("something went wrong: " + ev.Value)
	case "panic":
		panic("handler panicked: " + ev.Value)
	case "sleep":
		time.Sleep(time.Duration(ev.N) * time.Millisecond)
		return map[string]any{"slept_ms": ev.N}, nil
	case "exit":
		os.Exit(ev.N)
	case "big":
		return map[string]any{"data": strings.Repeat("x", ev.N)}, nil
	case "print":
		fmt.Println("hello from the handler:", ev.Value)
		fmt.Fprintln(os.Stderr, "a line on stderr")
		// A slow consumer, for the queue's tests: n ms after the line.
		time.Sleep(time.Duration(ev.N) * time.Millisecond)
		return map[string]any{"printed": true}, nil
	case "alloc":
		// Touch n MB so that the memory is resident.
		buf := make([]byte, ev.N<<20)
		for i := range buf {
			buf[i] = 1
		}
		return map[string]any{"allocated_mb": ev.N, "sum": len(buf)}, nil
	case "flaky":
		// A bad release: with USER_SETTING "flaky", every second call fails.
		calls++
		if os.Getenv("USER_SETTING") == "flaky" && calls%2 == 0 {
			return nil, errors.New("flaky: every second call fails")
		}
		return map[string]any{"ok": true}, nil
	case "file":
		// Which code runs: a file of the package, "" when it has none.
		b, _ := os.ReadFile(filepath.Join(os.Getenv("LAMBDA_TASK_ROOT"), filepath.Base(ev.Value)))
		return map[string]any{"file": string(b)}, nil
	case "environ":
		// Every variable the handler sees, by name.
		names := []string{}
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			names = append(names, name)
		}
		return map[string]any{"names": names}, nil
	case "env":
		deadline, _ := ctx.Deadline()
		out := map[string]any{"remaining_ms": time.Until(deadline).Milliseconds(), "started": started.UnixNano(), "pid": os.Getpid()}
		for _, k := range []string{"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
			"_HANDLER", "LAMBDA_TASK_ROOT", "TZ", "AWS_LAMBDA_RUNTIME_API", "AWS_REGION", "AWS_LAMBDA_LOG_GROUP_NAME", "NIMBUS_SECRET_SETTING", "USER_SETTING"} {
			out[k] = os.Getenv(k)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown action %q", ev.Action)
}

func main() { lambda.Start(handle) }
