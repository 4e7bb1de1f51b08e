/**
 * A scripted fake of an OpenAI-compatible chat-completions server on 127.0.0.1 (ephemeral port), for
 * testing thinking-reward clients against real HTTP, faults included.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  | { reply: string; delayMs?: number } // 200 with this message content
  | { status: number; body?: string; headers?: Record<string, string> }
  | { malformed: true } // 200 with a body that is not JSON
  | { reset: true } // the socket is destroyed before any reply
  | { hang: true } // never answers
  | { trickle: string; intervalMs: number }; // a 200 whose body comes one byte per interval

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON body (undefined when it was not JSON). */
  body: any;
  at: number;
}

export interface RmServer {
  /** http://127.0.0.1:PORT (no path). */
  url: string;
  requests: RecordedRequest[];
  /** The most chat-completions requests that were open at one time. */
  maxInFlight: number;
  close(): Promise<void>;
}

export function completion(content: string): string {
  return JSON.stringify({
    id: 'chatcmpl-test', object: 'chat.completion', model: 'fake-rm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  });
}

/** The user text of a chat-completions body, whether the content is a string or parts. */
export function userText(body: any): string {
  const content = body?.messages?.[1]?.content;
  if (typeof content === 'string') return content;
  return (content as { type: string; text?: string }[]).find((p) => p.type === 'text')?.text ?? '';
}

export async function startRmServer(script: (req: RecordedRequest, index: number) => Behaviour, models = ['fake-rm']): Promise<RmServer> {
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let inFlight = 0;
  const state = { maxInFlight: 0 };
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: models.map((id) => ({ id, object: 'model' })) }));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404).end('not found');
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      const record: RecordedRequest = { method: req.method, path: req.url, headers: req.headers, body, at: Date.now() };
      requests.push(record);
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      res.on('close', () => inFlight--);
      const b = script(record, requests.length - 1);
      if ('reply' in b) {
        const send = (): void => {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(completion(b.reply));
        };
        if (b.delayMs) later(b.delayMs, send);
        else send();
      } else if ('status' in b) {
        res.writeHead(b.status, { 'content-type': 'application/json', ...b.headers });
        res.end(b.body ?? JSON.stringify({ error: { message: `status ${b.status}` } }));
      } else if ('malformed' in b) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"choices": [ {"message": {"content": "<answer>0.5</ans');
      } else if ('reset' in b) {
        req.socket.destroy();
      } else if ('trickle' in b) {
        res.writeHead(200, { 'content-type': 'application/json' });
        const text = completion(b.trickle);
        let i = 0;
        const step = (): void => {
          if (res.destroyed) return;
          if (i >= text.length) {
            res.end();
            return;
          }
          res.write(text[i++]);
          later(b.intervalMs, step);
        };
        step();
      } // hang: no reply at all
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get maxInFlight() {
      return state.maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
