package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// publishVersion publishes f from src as version n, as the provider does:
// its own job at zero instances, then its record.
func publishVersion(t *testing.T, env *testenv.Env, f model.Function, src nomadjob.Source, n int) {
	t.Helper()
	opts := nomadjob.Options{HostNetwork: env.Network == nil}
	job := nomadjob.RenderVersion(f, src, opts, n)
	if _, _, err := env.Nomad.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = env.Nomad.Jobs().Deregister(*job.ID, true, nil) })
	rec := nomadjob.VersionRecord(f, src, opts, n)
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.VersionKey(f.Name, n), Value: rec.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
}

// The AWS SDK invokes a published version and an alias, by qualifier or by
// qualified ARN, synchronously and asynchronously: each runs the version it
// names, which X-Amz-Executed-Version and the records of asynchronous
// invocations report; a version that does not exist is refused before
// anything is stored.
func TestAWSSDKInvokesVersionsAndAliases(t *testing.T) {
	env, gw := gateway(t)
	f := model.Function{Name: "sdk-versions", Runtime: model.RuntimeProvided, MaxInstances: 1, Timeout: 10 * time.Second,
		Environment: map[string]string{"USER_SETTING": "one"}}
	src := release(t, env, gw, "one")
	publishVersion(t, env, f.WithDefaults(), src, 1)
	f.Environment = map[string]string{"USER_SETTING": "two"}
	register(t, env, f.WithDefaults(), release(t, env, gw, "two"), 0, true)
	t.Cleanup(func() {
		_, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil)
		_, _ = env.Consul.KV().DeleteTree(kvstore.FunctionKey(f.Name)+"/", nil)
	})
	alias := kvstore.AliasRecord{Name: "stable", Function: f.Name, FunctionVersion: "1"}
	if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AliasKey(f.Name, "stable"), Value: alias.Encode()}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the gateway to learn of version 1 and the alias", func() bool {
		resp, err := gw.Do(http.MethodGet, "/v1/functions/"+f.Name+":stable", nil)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	client := lambda.New(lambda.Options{BaseEndpoint: aws.String(gw.URL), Region: "local", Credentials: operatorCredentials(t, gw)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		name, qualifier, setting, executed string
	}{
		{f.Name, "", "two", "$LATEST"},
		{f.Name, "1", "one", "1"},
		{f.Name + ":1", "", "one", "1"},
		{"arn:aws:lambda:local:000000000000:function:" + f.Name + ":stable", "", "one", "1"},
		{f.Name, "stable", "one", "1"},
		{f.Name, "$LATEST", "two", "$LATEST"},
	} {
		in := &lambda.InvokeInput{FunctionName: aws.String(c.name), Payload: []byte(`{"action":"env"}`)}
		if c.qualifier != "" {
			in.Qualifier = aws.String(c.qualifier)
		}
		out, err := client.Invoke(ctx, in)
		if err != nil {
			t.Errorf("Invoke %s (Qualifier %q): %v", c.name, c.qualifier, err)
			continue
		}
		var env map[string]any
		_ = json.Unmarshal(out.Payload, &env)
		if env["USER_SETTING"] != c.setting || env["AWS_LAMBDA_FUNCTION_VERSION"] != c.executed || aws.ToString(out.ExecutedVersion) != c.executed {
			t.Errorf("Invoke %s (Qualifier %q): ran %v (version %v), executed version %q; want %s, version %s",
				c.name, c.qualifier, env["USER_SETTING"], env["AWS_LAMBDA_FUNCTION_VERSION"], aws.ToString(out.ExecutedVersion), c.setting, c.executed)
		}
	}

	// The handler sees the ARN its caller invoked, qualifier included.
	for qualifier, want := range map[string]string{"": ":function:" + f.Name, "stable": ":function:" + f.Name + ":stable", "1": ":function:" + f.Name + ":1"} {
		in := &lambda.InvokeInput{FunctionName: aws.String(f.Name), Payload: []byte(`{"action":"echo","value":"arn"}`)}
		if qualifier != "" {
			in.Qualifier = aws.String(qualifier)
		}
		out, err := client.Invoke(ctx, in)
		var echo map[string]any
		if err == nil {
			_ = json.Unmarshal(out.Payload, &echo)
		}
		if arn, _ := echo["arn"].(string); err != nil || !strings.HasSuffix(arn, want) {
			t.Errorf("Invoke with Qualifier %q: the handler's invoked function ARN is %v (err %v); want it to end with %s", qualifier, echo["arn"], err, want)
		}
	}

	// Refused before anything runs or is stored.
	for _, c := range []struct {
		name, qualifier string
		invocation      types.InvocationType
		want            string
	}{
		{f.Name, "7", types.InvocationTypeRequestResponse, "ResourceNotFoundException"},
		{f.Name, "7", types.InvocationTypeEvent, "ResourceNotFoundException"},
		{f.Name + ":stable", "1", types.InvocationTypeRequestResponse, "InvalidParameterValueException"},
		{f.Name, "canary", types.InvocationTypeEvent, "ResourceNotFoundException"},
	} {
		_, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(c.name), Qualifier: aws.String(c.qualifier), InvocationType: c.invocation, Payload: []byte(`{}`)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Invoke %s (Qualifier %q, %s): %v; want %s", c.name, c.qualifier, c.invocation, err, c.want)
		}
	}

	// An asynchronous invocation of the alias runs version 1: its failure
	// record names the qualifier and the version that ran.
	_, dead := deadLetters(t, env, f.Name)
	out, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(f.Name), Qualifier: aws.String("stable"),
		InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"action":"error","value":"async"}`)})
	if err != nil || out.StatusCode != http.StatusAccepted {
		t.Fatalf("Event invocation of the alias: %v %+v", err, out)
	}
	var rec struct {
		RequestContext struct {
			FunctionArn string `json:"functionArn"`
		} `json:"requestContext"`
		ResponseContext struct {
			ExecutedVersion string `json:"executedVersion"`
			FunctionError   string `json:"functionError"`
		} `json:"responseContext"`
	}
	awaitDeadLetter(t, dead, 90*time.Second, "an asynchronous invocation of the alias that fails", &rec)
	if !strings.HasSuffix(rec.RequestContext.FunctionArn, ":function:"+f.Name+":stable") || rec.ResponseContext.ExecutedVersion != "1" || rec.ResponseContext.FunctionError != "Unhandled" {
		t.Errorf("the failure record of the alias's event: %+v; want the alias's ARN and version 1", rec)
	}
}

// An alias answers as soon as its record is written, as after terraform
// apply: not a 404 while the gateway's watch catches up, whichever way it
// is asked for.
func TestANewAliasAnswersAtOnce(t *testing.T) {
	env, gw := gateway(t)
	f := model.Function{Name: "fresh-alias", Runtime: model.RuntimeProvided, MaxInstances: 1, Timeout: 10 * time.Second}
	src := release(t, env, gw, "one")
	publishVersion(t, env, f.WithDefaults(), src, 1)
	register(t, env, f.WithDefaults(), src, 0, true)
	t.Cleanup(func() {
		_, _, _ = env.Nomad.Jobs().Deregister(nomadjob.JobID(f.Name), true, nil)
		_, _ = env.Consul.KV().DeleteTree(kvstore.FunctionKey(f.Name), nil)
	})
	waitFor(t, 30*time.Second, "the gateway to learn of version 1", func() bool {
		return invokeNoFatal(gw, f.Name+":1", `{}`).status == http.StatusOK
	})
	client := lambda.New(lambda.Options{BaseEndpoint: aws.String(gw.URL), Region: "local", Credentials: operatorCredentials(t, gw)})
	for i := range 10 {
		name := fmt.Sprintf("fresh%d", i)
		alias := kvstore.AliasRecord{Name: name, Function: f.Name, FunctionVersion: "1"}
		put := func() {
			if _, err := env.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.AliasKey(f.Name, name), Value: alias.Encode()}, nil); err != nil {
				t.Fatal(err)
			}
		}
		put()
		if a := invokeNoFatal(gw, f.Name+":"+name, `{}`); a.status != http.StatusOK || a.header.Get("X-Amz-Executed-Version") != "1" {
			t.Errorf("invoking alias %s right after its record was written: %d %s (version %q)", name, a.status, a.raw, a.header.Get("X-Amz-Executed-Version"))
		}
		name += "-dry"
		alias.Name = name
		put()
		if _, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(f.Name), Qualifier: aws.String(name), InvocationType: types.InvocationTypeDryRun}); err != nil {
			t.Errorf("a DryRun of alias %s right after its record was written: %v", name, err)
		}
		name += "-view"
		alias.Name = name
		put()
		resp, err := gw.Do(http.MethodGet, "/v1/functions/"+f.Name+":"+name, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the status of alias %s right after its record was written: %d", name, resp.StatusCode)
		}
	}
	// A name Consul does not hold is still a 404, with no wait to speak of.
	if a := invokeNoFatal(gw, f.Name+":absent", `{}`); a.status != http.StatusNotFound || !strings.Contains(a.raw, "no alias absent") {
		t.Errorf("invoking an alias that does not exist: %d %s", a.status, a.raw)
	}
}
