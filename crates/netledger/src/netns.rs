//! Network namespaces for tests and the demo.
