import { isIP } from "node:net";
import { connect } from "node:tls";
import type { IStream, MqttClient } from "mqtt";

/**
 * MQTT.js's transport for the thing, for `new MqttClient(tlsStream, options)`: a new TLS
 * connection (mutual: the thing's certificate) each time the client connects, made from the
 * client's options as they are then (`host`, `port`, and the PEM `ca`, `cert` and `key`, which
 * a renewal replaces: session.ts reconnectWith). mqtt.connect() would build the same from a
 * URL, but its first call loads every transport MQTT.js has (WebSocket, TCP, SOCKS proxies) for
 * a thing that only ever speaks MQTT over TLS. The broker's certificate must chain to `ca` and
 * name `host` (node:tls checks, with SNI unless `host` is an IP address). Until the handshake is
 * done, a failure that carries no error code (which MqttClient would not report) goes to the
 * client's `error` event here, and the connection is closed.
 */
export function tlsStream(client: MqttClient): IStream {
  const { host = "localhost", port = 8883, ca, cert, key } = client.options;
  const socket = connect({
    host,
    port,
    servername: isIP(host) ? undefined : host,
    ca,
    cert,
    key,
    rejectUnauthorized: true,
  });
  const beforeHandshake = (err: NodeJS.ErrnoException) => {
    // MqttClient reports stream errors that have a code itself
    if (!err.code) client.emit("error", err);
    socket.end();
  };
  socket.on("error", beforeHandshake);
  socket.once("secureConnect", () => socket.off("error", beforeHandshake));
  return socket as unknown as IStream;
}
