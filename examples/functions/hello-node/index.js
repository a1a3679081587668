// A Lambda-style Node.js handler; Nimbus runs it with runtime = "nodejs".
exports.handler = async (event, context) => {
  // A direct invocation ({"name": ...}) or an HTTP route's event (?name=...).
  const name = (event && (event.name || (event.queryStringParameters || {}).name)) || 'world';
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name} from Node.js on Nimbus!`, requestId: context.awsRequestId };
};
