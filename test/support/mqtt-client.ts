/**
 * MQTT clients with a thing's certificate, for tests that talk to a broker directly (the hub's
 * embedded aedes or Mosquitto): connect once and say what happened, wait for a message, a close
 * or a SUBACK, each with a bound.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";

/** What a single connect did: connected (`client`, with the CONNACK's session-present flag), refused (`error`: a CONNACK code or a TLS alert), or `closed` before a CONNACK. */
export type Attempt = { client?: MqttClient; error?: Error & { code?: unknown }; closed?: boolean; sessionPresent?: boolean };

export interface AttemptOptions {
  port: number;
  /** the broker's CA */
  caPem: string;
  /** the client certificate; absent: none is sent */
  cert?: { certPem: string; privateKeyPem: string };
  clientId: string;
  extra?: Partial<IClientOptions>;
  /** how long to wait for the CONNACK, in ms (default 6 s; a cluster on a busy machine needs more) */
  timeoutMs?: number;
}

/** Connects once over mutual TLS to 127.0.0.1 (no retries) and reports what happened, within `timeoutMs`. */
export function attemptConnect(opts: AttemptOptions): Promise<Attempt> {
  const timeoutMs = opts.timeoutMs ?? 6_000;
  return new Promise((resolve) => {
    const client = mqtt.connect({
      protocol: "mqtts",
      host: "127.0.0.1",
      port: opts.port,
      ca: opts.caPem,
      ...(opts.cert ? { cert: opts.cert.certPem, key: opts.cert.privateKeyPem } : {}),
      rejectUnauthorized: true,
      clientId: opts.clientId,
      reconnectPeriod: 0,
      connectTimeout: timeoutMs - 1_000,
      ...opts.extra,
    });
    let finished = false;
    const finish = (result: Attempt) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      // Only our own listeners go (MQTT.js reconnects from its own `close` listener); the error
      // listener stays, so an error the client meets later is not an unhandled 'error' event.
      client.off("connect", onConnect).off("close", onClose);
      if (!result.client) client.end(true);
      resolve(result);
    };
    const timer = setTimeout(() => finish({ error: new Error(`no answer within ${timeoutMs} ms`) }), timeoutMs);
    const onConnect = (connack: { sessionPresent?: boolean }) => finish({ client, sessionPresent: connack.sessionPresent });
    const onClose = () => finish({ closed: true, error: new Error("connection closed before CONNACK") });
    client.on("connect", onConnect);
    client.on("error", (error) => finish({ error }));
    client.on("close", onClose);
  });
}

/**
 * attemptConnect, again while the broker answers CONNACK 3 (server unavailable: RabbitMQ 3.10's
 * client-id tracking timed out, as it does for a while after a cluster forms on a busy machine),
 * for up to `withinMs`: what a thing's reconnect does. Any other answer is returned at once.
 */
export async function attemptPastUnavailable(opts: AttemptOptions, withinMs = 30_000): Promise<Attempt> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const result = await attemptConnect(opts);
    if (result.error?.code !== 3 || Date.now() > deadline) return result;
    await Bun.sleep(1_000);
  }
}

/** The next message on `topic`, or undefined after `ms`. */
export function nextMessage(client: MqttClient, topic: string, ms: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const onMessage = (t: string, payload: Buffer) => t === topic && done(payload.toString());
    const timer = setTimeout(() => done(undefined), ms);
    const done = (value: string | undefined) => {
      clearTimeout(timer);
      client.off("message", onMessage);
      resolve(value);
    };
    client.on("message", onMessage);
  });
}

/** True when the client's connection closes within `ms`. */
export function closedWithin(client: MqttClient, ms: number): Promise<boolean> {
  if (!client.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    client.once("close", () => (clearTimeout(timer), resolve(true)));
  });
}

/** The SUBACK return code for one topic (MQTT.js rejects a 128 but keeps the packet). */
export function subscribeCode(client: MqttClient, topic: string): Promise<number | undefined> {
  return client.subscribeAsync(topic, { qos: 1 }).then(
    (granted) => granted[0]?.qos,
    (err: Error & { packet?: { granted?: number[] } }) => err.packet?.granted?.[0],
  );
}
