/**
 * What the hub's edges tell the metrics (docs/metrics.md), as an interface without a library:
 * the API (routes.ts) reports each answered request and each error by kind, the broker's events
 * each dropped or failed MQTT publish. Commands other than `hub serve` pass nothing and pay
 * nothing; `hub serve` passes the Prometheus registry of prometheus.ts, loaded only there.
 *
 * Messages are not counted here: the use cases that store or deliver them already announce each
 * one once, on the MessageFeed (messages/feed.ts), and the registry listens to it.
 */
import type { ErrorKind } from "../../shared/errors.ts";

/** One request the HTTP API answered. */
export interface RequestSample {
  /** the route's pattern (`things/:id/collect`, `console`, `unmatched`): never the raw path, which holds ids */
  route: string;
  /** GET, POST, ...; anything unusual is `other` */
  method: string;
  status: number;
  /** from the request's arrival to its answer's headers (a streamed archive's body may go on), in seconds */
  seconds: number;
}

export interface HubObserver {
  request(sample: RequestSample): void;
  /** a failure with a kind (src/shared/errors.ts) reached an edge: an HTTP answer, or an MQTT publish not acknowledged or dropped */
  error(kind: ErrorKind, via: "http" | "mqtt"): void;
  /** a thing's MQTT publish was acknowledged but not stored: `event` is the log event that says why (`hub.collect_refused`) */
  dropped(event: string): void;
  /** message retention (hub.yml `messages.keepFor`) deleted `count` messages */
  expired(count: number): void;
}

/** The HTTP methods a label may name; any other is `other`, so a client cannot mint label values. */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** `method` as a label value: one of a fixed few. */
export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : "other";
}
