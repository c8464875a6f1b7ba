/**
 * requestText's network errors, as `collect`, `outbox list` and bootstrap show them to the
 * thing's owner: the address in front, the code kept, the runtime's words for a programmer
 * ("Unable to connect. Is the computer able to access the url?") said in the owner's.
 */
import { describe, expect, test } from "bun:test";
import { preconnect, requestText } from "../../src/thing/egress/http-post.ts";

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

/** A bare HTTP/1.1 server on loopback that counts the TCP connections made to it and answers every request 200 on the same connection. */
function countingServer() {
  let connections = 0;
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        connections++;
      },
      data(socket, chunk) {
        if (chunk.toString("latin1").includes("\r\n\r\n")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
      },
    },
  });
  return { url: `http://127.0.0.1:${listener.port}/dev/v1/things/x/collect`, connections: () => connections, stop: () => listener.stop(true) };
}

/** A bare HTTP/1.1 server on loopback that closes its first `closing` connections once a request came on them (`afterMs` later), unanswered, and answers 200 on the others. */
function closingServer(closing: number, afterMs = 0) {
  let connections = 0;
  const listener = Bun.listen<{ n: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { n: ++connections };
      },
      data(socket, chunk) {
        if (!chunk.toString("latin1").includes("\r\n\r\n")) return;
        if (socket.data.n > closing) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        else if (afterMs) setTimeout(() => socket.end(), afterMs);
        else socket.end();
      },
    },
  });
  return { url: `http://127.0.0.1:${listener.port}/dev/v1/things/x/collect`, connections: () => connections, stop: () => listener.stop(true) };
}

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await Bun.sleep(5)) if (condition()) return true;
  return condition();
}

describe("preconnect (a one-shot collect's connection opened while it loads its keys)", () => {
  test("connects ahead, and the request then goes over that connection", async () => {
    const server = countingServer();
    try {
      preconnect(server.url);
      expect(await until(() => server.connections() === 1, 5_000)).toBe(true);
      const answer = await requestText(server.url, { body: "{}", timeoutMs: 5_000 });
      expect(answer.status).toBe(200);
      expect(answer.body).toBe("ok");
      expect(server.connections()).toBe(1);
    } finally {
      server.stop();
    }
  });

  test("a server that closes the connection preconnect opened (an idle timeout of a few ms): the request is sent once more on a new one", async () => {
    const server = closingServer(1);
    try {
      preconnect(server.url);
      expect(await until(() => server.connections() === 1, 5_000)).toBe(true);
      const answer = await requestText(server.url, { body: "{}", timeoutMs: 5_000 });
      expect({ status: answer.status, connections: server.connections() }).toEqual({ status: 200, connections: 2 });
    } finally {
      server.stop();
    }
  });

  test("a preconnected connection closed well after the request went out (the server had it and worked on it): not sent again (attack round 24, F3)", async () => {
    const server = closingServer(1, 1_500);
    try {
      preconnect(server.url);
      expect(await until(() => server.connections() === 1, 5_000)).toBe(true);
      const { code } = await failure(server.url);
      expect({ code, connections: server.connections() }).toEqual({ code: "ECONNRESET", connections: 1 });
    } finally {
      server.stop();
    }
  });

  test("a request on a connection of its own, closed the same way, is not sent again: its caller decides (the outbox retries later)", async () => {
    const server = closingServer(1);
    try {
      const { code } = await failure(server.url);
      expect({ code, connections: server.connections() }).toEqual({ code: "ECONNRESET", connections: 1 });
    } finally {
      server.stop();
    }
  });

  test("a port nothing listens on: preconnect says nothing, and the request reports it as before", async () => {
    const port = closedPort();
    expect(() => preconnect(`http://127.0.0.1:${port}/x`)).not.toThrow();
    const { code } = await failure(`http://127.0.0.1:${port}/x`);
    expect(code).toBe("ECONNREFUSED");
  });

  test("https: nothing is opened (the request's own CA must check the connection it uses)", async () => {
    const server = countingServer();
    try {
      preconnect(server.url.replace("http:", "https:"));
      expect(await until(() => server.connections() > 0, 300)).toBe(false);
    } finally {
      server.stop();
    }
  });

  test("a URL that is no URL: nothing thrown", () => {
    expect(() => preconnect("http://")).not.toThrow();
  });
});
