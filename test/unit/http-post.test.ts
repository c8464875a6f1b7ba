/**
 * requestText's network errors, as `collect`, `outbox list` and bootstrap show them to the
 * thing's owner: the address in front, the code kept, the runtime's words for a programmer
 * ("Unable to connect. Is the computer able to access the url?") said in the owner's.
 */
import { describe, expect, test } from "bun:test";
import { requestText } from "../../src/thing/egress/http-post.ts";

/** A loopback port nothing listens on: one the kernel gave a listener that is closed again. */
function closedPort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = listener;
  listener.stop(true);
  return port;
}

async function failure(url: string): Promise<{ message: string; code?: string }> {
  try {
    await requestText(url, { timeoutMs: 5_000 });
  } catch (err) {
    return { message: (err as Error).message, code: (err as NodeJS.ErrnoException).code };
  }
  throw new Error(`${url} answered`);
}

describe("requestText's network errors", () => {
  test("a port nothing listens on: the address and 'connection refused', not Bun's question to a programmer", async () => {
    const port = closedPort();
    const { message, code } = await failure(`http://127.0.0.1:${port}/dev/v1/things/x/collect`);
    expect(code).toBe("ECONNREFUSED");
    expect(message).toBe(`127.0.0.1:${port}: connection refused: nothing accepts connections at that address and port`);
  });
});
