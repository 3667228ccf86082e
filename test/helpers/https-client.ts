// A small HTTPS client over node:https with keep-alive, reporting which certificate the server presented.
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface HttpsReply {
  status: number;
  body: string;
  json: unknown;
  reusedSocket: boolean;
  peerSerial: string;
}

export function keepAliveAgent(ca: string | string[], maxSockets = 16): Agent {
  return new Agent({ keepAlive: true, maxSockets, ca });
}

export function httpsRequest(
  agent: Agent | false | undefined,
  url: string,
  options: { method?: string; body?: string | Buffer; headers?: Record<string, string>; ca?: string } = {},
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: options.method ?? (options.body !== undefined ? 'POST' : 'GET'),
        agent,
        ca: options.ca,
        headers: {
          ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...options.headers,
        },
      },
      (res) => {
        // read the peer certificate now: at 'end' a keep-alive socket is already back in the agent
        const peer = (res.socket as TLSSocket | null)?.getPeerCertificate?.();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(body);
          } catch {
            json = undefined;
          }
          resolve({
            status: res.statusCode ?? 0,
            body,
            json,
            reusedSocket: req.reusedSocket,
            peerSerial: peer?.serialNumber ?? '',
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}
