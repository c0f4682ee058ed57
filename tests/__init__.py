"""The test suite: unit tests per package, and integration tests against real peers."""
