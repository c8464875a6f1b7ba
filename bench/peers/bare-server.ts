/**
 * The peer of row 3 (bench/rows/hub-collect.ts): a bare `Bun.serve` handler that reads the
 * request body and answers 200 with a small JSON document, nothing else (no token, no store).
 * `bun bench/peers/bare-server.ts PORT`; prints `listening` once it does.
 */
const port = Number(process.argv[2]);
const answer = JSON.stringify({ status: "OK", code: 200, messages: [{ key: "message", value: "Message collected." }], result: null });
Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(request) {
    await request.arrayBuffer();
    return new Response(answer, { headers: { "Content-Type": "application/json" } });
  },
});
console.log("listening");
