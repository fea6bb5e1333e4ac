import { test } from 'node:test';
import assert from 'node:assert/strict';
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
