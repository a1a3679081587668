// Nimbus nodejs bootstrap: runs a Lambda-style handler (file.export), async
// or callback style, against the AWS Lambda Runtime API that nimbus-host
// serves. Node's standard library only.
'use strict';

const http = require('http');
const path = require('path');

const [apiHost, apiPort] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body);
    const req = http.request({
      host: apiHost, port: Number(apiPort), method, agent,
      path: '/2018-06-01/runtime' + urlPath,
      headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

function errorBody(err) {
  if (!(err instanceof Error)) {
    return { errorType: typeof err === 'string' ? 'string' : 'Error', errorMessage: String(err), trace: [] };
  }
  return { errorType: err.name, errorMessage: err.message, trace: (err.stack || '').split('\n') };
}

function loadHandler() {
  const spec = process.env._HANDLER || '';
  const dot = spec.lastIndexOf('.');
  if (dot <= 0) throw new Error(`handler "${spec}" is not file.export`);
  const file = path.resolve(process.env.LAMBDA_TASK_ROOT || '.', spec.slice(0, dot));
  const mod = require(file);
  const fn = mod[spec.slice(dot + 1)];
  if (typeof fn !== 'function') throw new Error(`${file} does not export a function "${spec.slice(dot + 1)}"`);
  return fn;
}

function context(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  return {
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: headers['lambda-runtime-client-context'] ? JSON.parse(headers['lambda-runtime-client-context']) : undefined,
    identity: headers['lambda-runtime-cognito-identity'] ? JSON.parse(headers['lambda-runtime-cognito-identity']) : undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
}

// Runs the handler either way Lambda allows: a returned promise (or value),
// or a callback as the third argument.
function run(handler, event, ctx) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) reject(err); else resolve(result);
    };
    try {
      const out = handler(event, ctx, callback);
      if (handler.length < 3 || (out && typeof out.then === 'function')) {
        Promise.resolve(out).then((v) => callback(null, v), (e) => callback(e === undefined ? new Error('undefined rejection') : e));
      }
    } catch (e) {
      callback(e);
    }
  });
}

async function main() {
  let handler;
  try {
    handler = loadHandler();
  } catch (err) {
    const body = errorBody(err);
    body.errorType = 'Runtime.ImportModuleError';
    await request('POST', '/init/error', JSON.stringify(body));
    process.exit(1);
  }
  for (;;) {
    const next = await request('GET', '/invocation/next');
    const id = next.headers['lambda-runtime-aws-request-id'];
    process.env._X_AMZN_TRACE_ID = next.headers['lambda-runtime-trace-id'] || '';
    let event;
    try {
      event = JSON.parse(next.body || 'null');
    } catch (err) {
      await request('POST', `/invocation/${id}/error`, JSON.stringify(errorBody(err)));
      continue;
    }
    try {
      const result = await run(handler, event, context(next.headers));
      const payload = JSON.stringify(result === undefined ? null : result);
      await request('POST', `/invocation/${id}/response`, payload);
    } catch (err) {
      await request('POST', `/invocation/${id}/error`, JSON.stringify(errorBody(err)));
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
