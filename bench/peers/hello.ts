/** The start-time floor of row 6 (bench/rows/start.ts), compiled like flashlex: prints one line and exits. */
console.log("hello");
