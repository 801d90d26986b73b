// Package cli is the command-line plumbing every binary of this repository
// shares: one declarative table of flags, each with its environment variable
// (derived from the flag's name under the one prefix KGRPC_), its default
// and whether it is a secret; parsing with "the flag wins over the
// variable"; the logger the log flags describe; and the signal handling and
// exit codes of a main function.
package cli
