/**
 * The HTTP endpoints on http.host:http.port: GET /metrics (Prometheus text exposition), /healthz (the
 * process answers) and /readyz (Gantry can take instances: 200 or 503 with the checks as JSON). Nothing
 * here carries patient data.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.js';

export interface ReadinessCheck {
  name: string;
  ok: boolean;
  /** Why it is not ok, for the operator. */
  detail?: string;
}

export interface HttpEndpoints {
  metrics(): Promise<{ contentType: string; body: string }>;
  readiness(): ReadinessCheck[];
}

export class HttpServer {
  private readonly server: Server;

  constructor(
    private readonly endpoints: HttpEndpoints,
    private readonly log: Logger,
  ) {
    this.server = createServer((request, response) => {
      this.handle(request, response).catch((error: Error) => {
        // The path only: a query string is whatever the caller typed, patient data included.
        this.log.error({ err: error.message, path: pathOf(request) }, 'HTTP request failed');
        if (!response.headersSent) send(response, 500, 'text/plain; charset=utf-8', 'internal error\n');
        else response.destroy();
      });
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.server.on('error', (error) => this.log.error({ err: error.message }, 'HTTP listener error'));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = pathOf(request);
    if (!PATHS.has(path)) {
      send(response, 404, 'text/plain; charset=utf-8', 'not found: GET /metrics, /healthz or /readyz\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      send(response, 405, 'text/plain; charset=utf-8', 'only GET and HEAD\n');
      return;
    }
    switch (path) {
      case '/metrics': {
        const { contentType, body } = await this.endpoints.metrics();
        send(response, 200, contentType, body);
        return;
      }
      case '/healthz':
        send(response, 200, 'application/json', '{"status":"ok"}\n');
        return;
      case '/readyz': {
        const checks = this.endpoints.readiness();
        const ready = checks.every((check) => check.ok);
        send(response, ready ? 200 : 503, 'application/json', `${JSON.stringify({ status: ready ? 'ready' : 'unready', checks })}\n`);
        return;
      }
    }
  }
}

/** The paths served; any other is 404 whatever the method (a 405 would say it exists). */
const PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/readyz']);

/** Node leaves the body out of an answer to HEAD by itself. */
function send(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  response.end(body);
}

/** The path of the request target, in origin form (/metrics) or absolute form (http://host/metrics,
 * RFC 9112 3.2.2: a server must accept it; a client going through a proxy may send it). */
function pathOf(request: IncomingMessage): string {
  const target = (request.url ?? '/').replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  return (target.split('?')[0] ?? '') || '/';
}
