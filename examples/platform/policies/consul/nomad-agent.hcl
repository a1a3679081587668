# Consul policy of the Nomad agents themselves (the `consul { token }` of
# each Nomad client and server), with ACLs on and default deny. Nomad
# registers and deregisters the services of the tasks it runs, with their
# health checks; Nimbus needs nothing more from it.
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "write"
}
