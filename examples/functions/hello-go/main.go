// Command hello-go is a Lambda handler written with aws-lambda-go; Nimbus
// runs it unmodified with runtime = "provided". Build it as "bootstrap":
//
//	CGO_ENABLED=0 go build -o dist/bootstrap ./examples/functions/hello-go
package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// request is a direct invocation ({"name": ...}) or an HTTP route's event
// (?name=...).
type request struct {
	Name  string            `json:"name"`
	Query map[string]string `json:"queryStringParameters"`
}

type response struct {
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func handle(ctx context.Context, req request) (response, error) {
	if req.Name == "" {
		req.Name = req.Query["name"]
	}
	if req.Name == "" {
		req.Name = "world"
	}
	lc, _ := lambdacontext.FromContext(ctx)
	fmt.Printf("greeting %s\n", req.Name)
	return response{Message: "Hello, " + req.Name + " from Go on Nimbus!", RequestID: lc.AwsRequestID}, nil
}

func main() { lambda.Start(handle) }
