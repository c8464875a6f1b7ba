/**
 * The armv7 build's HTTP path (node:http in src/thing/egress/http-post.ts), bundled and run
 * under Node by test/unit/bundle-node.test.ts: prints what requestText does against receivers
 * that trickle an answer, stream one without end, are aborted, or are plain HTTP behind https.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { requestText } from "../../src/thing/egress/http-post.ts";

const listen = (server: http.Server) => new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
const drip = http.createServer((_req, res) => {
  res.writeHead(200);
  const timer = setInterval(() => res.write("x"), 100);
  res.on("close", () => clearInterval(timer));
});
const endless = http.createServer((_req, res) => {
  res.writeHead(200);
  const block = Buffer.alloc(65536, 120);
  const write = () => {
    while (res.write(block));
  };
  res.on("drain", write);
  write();
});
// CommonJS under Node: no top-level await
async function main(): Promise<void> {
  const dripPort = await listen(drip);
  const endlessPort = await listen(endless);
  const outcome = async (run: () => Promise<{ status: number; body: string }>) => {
    const started = Date.now();
    try {
      const answer = await run();
      return { status: answer.status, bytes: answer.body.length, ms: Date.now() - started };
    } catch (err) {
      return { error: (err as Error).message, code: (err as { code?: string }).code, ms: Date.now() - started };
    }
  };
  console.log(
    JSON.stringify({
      trickle: await outcome(() => requestText(`http://127.0.0.1:${dripPort}/`, { timeoutMs: 1000 })),
      endless: await outcome(() => requestText(`http://127.0.0.1:${endlessPort}/`, { timeoutMs: 10_000 })),
      abort: await outcome(() => {
        const aborted = new AbortController();
        setTimeout(() => aborted.abort(new Error("serve is stopping")), 300);
        return requestText(`http://127.0.0.1:${dripPort}/`, { timeoutMs: 10_000, signal: aborted.signal });
      }),
      abortedBefore: await outcome(() =>
        requestText(`http://127.0.0.1:${dripPort}/`, { timeoutMs: 10_000, signal: AbortSignal.abort(new Error("serve is stopping")) }),
      ),
      plainBehindHttps: await outcome(() => requestText(`https://127.0.0.1:${dripPort}/`, { timeoutMs: 10_000 })),
      dripPort,
    }),
  );
  drip.close();
  endless.close();
  process.exit(0);
}
void main();
