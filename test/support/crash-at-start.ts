// A release binary that crashes at start (SIGABRT) before doing anything: built like flashlex
// (scripts/build.ts, another entry) by test/integration/self-update.test.ts.
process.abort();
