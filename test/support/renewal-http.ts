/**
 * A thing's certificate renewal done by the test itself over the hub's HTTP API, as the agent
 * does it (src/thing/renewal/renewer.ts): a new key, a CSR, `POST .../certificate` with a token
 * signed by the current key. `useKey` then signs a request with a key (`GET .../certificate`),
 * which is how the hub learns the new key is in use and forgets the previous one.
 */
import { createPrivateKey } from "node:crypto";
import { createCsr } from "../../src/crypto/csr.ts";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";

export interface Identity {
  certPem: string;
  privateKeyPem: string;
}

const url = (apiPort: number, thingId: string) => `http://127.0.0.1:${apiPort}/dev/v1/things/${thingId}/certificate`;

async function call(apiPort: number, thingId: string, keyPem: string, init: RequestInit = {}): Promise<Response> {
  const token = await signThingToken({ thingId, privateKey: createPrivateKey(keyPem) });
  return fetch(url(apiPort, thingId), { ...init, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } });
}

/** Renews `thingId`'s certificate with a token of `current`'s key; the new identity. Throws when the hub refuses. */
export async function renewOverHttp(apiPort: number, thingId: string, name: string, current: Identity): Promise<Identity> {
  const keys = await generateThingKeyPair("rsa");
  const csr = await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: name });
  const answer = await call(apiPort, thingId, current.privateKeyPem, { method: "POST", body: JSON.stringify({ csr }) });
  const body = (await answer.json()) as { result?: { certificate?: string } };
  if (answer.status !== 200 || !body.result?.certificate) throw new Error(`renewal refused: ${answer.status} ${JSON.stringify(body)}`);
  return { certPem: body.result.certificate, privateKeyPem: keys.privateKeyPem };
}

/** The HTTP status of `GET .../certificate` signed with `identity`'s key (200: the hub accepts the key). */
export async function useKey(apiPort: number, thingId: string, identity: Identity): Promise<number> {
  return (await call(apiPort, thingId, identity.privateKeyPem)).status;
}
