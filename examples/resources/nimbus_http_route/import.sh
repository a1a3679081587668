# Import a route by what it matches: [host]path[*] [METHODS], where * marks a
# prefix route and methods are sorted.
terraform import nimbus_http_route.orders '/orders* GET,POST'
