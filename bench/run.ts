/** `bun run bench`: every benchmark in turn. Each prints medians; none is a test. */
export {}; // a module, for top-level await

const benches = ["bench/ingress.ts", "bench/store-drivers.ts", "bench/targets.ts"];
for (const bench of benches) {
  if (!(await Bun.file(bench).exists())) continue;
  console.log(`\n== ${bench}`);
  const code = Bun.spawnSync([process.execPath, bench, ...process.argv.slice(2)], { stdout: "inherit", stderr: "inherit" }).exitCode;
  if (code !== 0) process.exit(code);
}
