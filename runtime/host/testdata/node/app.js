'use strict';

exports.asyncHandler = async (event, context) => {
  if (event.action === 'error') {
    throw new TypeError('bad value: ' + event.value);
  }
  if (event.action === 'sleep') {
    await new Promise((r) => setTimeout(r, event.n));
    return { slept_ms: event.n };
  }
  if (event.action === 'exit') {
    process.exit(event.n);
  }
  if (event.action === 'big') {
    return { data: 'x'.repeat(event.n) };
  }
  console.log('hello from node');
  return { echo: event.value, requestId: context.awsRequestId, functionName: context.functionName,
    remainingOk: context.getRemainingTimeInMillis() > 0 };
};

exports.callbackHandler = (event, context, callback) => {
  if (event.action === 'error') {
    callback(new RangeError('callback error: ' + event.value));
    return;
  }
  setTimeout(() => callback(null, { echo: event.value, style: 'callback' }), 5);
};
