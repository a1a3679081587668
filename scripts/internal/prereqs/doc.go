// Package prereqs holds the tests of scripts/prereqs.sh, which checks the
// system packages `make demo` and `make test` need and installs the missing
// ones on Debian and Ubuntu when run as root. The tests run the script
// against a fake root (NIMBUS_PREREQS_ROOT) with a fake apt-get, and never
// run the real apt-get.
package prereqs
