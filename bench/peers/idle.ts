/** The idle floor of row 5 (bench/rows/rss.ts), compiled with `bun build --compile`: a Bun binary that only waits. */
setInterval(() => {}, 1 << 30);
