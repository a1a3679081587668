// A Lambda-style Node.js handler; Nimbus runs it with runtime = "nodejs".
exports.handler = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name} from Node.js on Nimbus!`, requestId: context.awsRequestId };
};
