import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { HttpServer } from '../../src/observability/http-server.js';
import { createLogger } from '../../src/observability/logger.js';

test('a failed request is logged with its path, not its query string (which may carry anything a caller typed)', async () => {
  const lines: string[] = [];
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const server = new HttpServer(
    {
      metrics: () => Promise.reject(new Error('registry broken')),
      readiness: () => [],
    },
    log,
  );
  const address = await server.listen('127.0.0.1', 0);
  try {
    const response = await fetch(`http://127.0.0.1:${address.port}/metrics?PatientName=DOE%5EJOHN&PatientID=MRN123`);
    assert.equal(response.status, 500);
    await response.text();
  } finally {
    await server.close();
  }
  const failure = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => entry.msg === 'HTTP request failed');
  assert.ok(failure, `no failure logged: ${lines.join('')}`);
  assert.equal(failure.path, '/metrics');
  assert.doesNotMatch(lines.join(''), /DOE|MRN123/);
});

/** The status line of the answer to `request`, sent as it is on a raw connection. */
function statusLineOf(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += String(chunk)));
    socket.on('end', () => resolve(answer.split('\r\n')[0] ?? ''));
    socket.on('error', reject);
    socket.end(request);
  });
}

/** A server whose metrics and readiness say ready. */
function readyServer(): HttpServer {
  return new HttpServer(
    {
      metrics: () => Promise.resolve({ contentType: 'text/plain; version=0.0.4', body: 'gantry_ready 1\n' }),
      readiness: () => [{ name: 'index', ok: true }],
    },
    createLogger('silent'),
  );
}

// Found in a review: a request in absolute form (RFC 9112 3.2.2, which a server must accept; a client
// that goes through a proxy may send it) was answered 404, its whole URL taken for the path.
test('a request in absolute form is answered by its path', async () => {
  const server = readyServer();
  const address = await server.listen('127.0.0.1', 0);
  try {
    const ask = (target: string) => statusLineOf(address.port, `GET ${target} HTTP/1.1\r\nHost: gantry.example.org\r\nConnection: close\r\n\r\n`);
    assert.equal(await ask('http://gantry.example.org:8080/metrics'), 'HTTP/1.1 200 OK');
    assert.equal(await ask('http://gantry.example.org/readyz?verbose=1'), 'HTTP/1.1 200 OK');
    assert.equal(await ask('HTTP://GANTRY.EXAMPLE.ORG/healthz'), 'HTTP/1.1 200 OK');
    assert.equal(await ask('http://gantry.example.org'), 'HTTP/1.1 404 Not Found', 'no path: /, which serves nothing');
    assert.equal(await ask('/metrics'), 'HTTP/1.1 200 OK');
    assert.equal(await ask('/elsewhere'), 'HTTP/1.1 404 Not Found');
  } finally {
    await server.close();
  }
});

// Found in a review: a request of another method to a path that serves nothing was answered 405 with
// "Allow: GET, HEAD", which says the path exists and takes those (RFC 9110 15.5.6); it is 404.
test('an unknown path is 404 whatever the method; a known one is 405 to other methods', async () => {
  const server = readyServer();
  const address = await server.listen('127.0.0.1', 0);
  try {
    const base = `http://127.0.0.1:${address.port}`;
    const unknown = await fetch(`${base}/admin`, { method: 'POST', body: 'x' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.headers.get('allow'), null);
    await unknown.text();
    for (const path of ['/metrics', '/healthz', '/readyz']) {
      const refused = await fetch(`${base}${path}`, { method: 'DELETE' });
      assert.equal(refused.status, 405, path);
      assert.equal(refused.headers.get('allow'), 'GET, HEAD');
      await refused.text();
    }
  } finally {
    await server.close();
  }
});
