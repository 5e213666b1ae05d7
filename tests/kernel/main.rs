//! Kernel integration tests: real programs attached in network namespaces, real peers.
