/** What Gantry says of a weak deid.secret (src/config/secret.ts secretWarnings), and what it never
 * prints: found in the secrets review. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { secretWarnings } from '../../src/config/secret.js';

test('a guessable secret or one with whitespace around it is warned of; a random one is not', () => {
  for (const [secret, why] of [
    ['Password12345678', 'a common word'],
    ['changeme-changeme', 'a repeated word'],
    ['secretsecretsecret', 'a repeated word'],
    ['1234567890123456', 'a run of keys or digits'],
    ['abababababababab', 'a repeated word'],
    ['aaaabbbbccccdddd', '4 distinct characters'],
    ['8302749165038274', 'about 53 bits'],
  ] as const) {
    const warnings = secretWarnings(secret);
    assert.equal(warnings.length, 1, secret);
    assert.match(warnings[0] ?? '', new RegExp(`looks guessable \\(${why}\\).*openssl rand -base64 32`), secret);
  }
  assert.deepEqual(secretWarnings('q3V9xZ2kLm8pR4tW7yB1nC6dF0gH5jK'), [], 'random');
  // Found in the review of these warnings: a quarter of random hex secrets of 16 characters, and every
  // random secret of letters only, were warned of as guessable.
  for (const random of ['f2e5c199f9f2ddd0', '3b8e0c7791a4f6d2', 'kQzWmPxRtLbNvHsJyDgF']) assert.deepEqual(secretWarnings(random), [], random);
  // A passphrase of many words is not one common word: the test suite's own started every node with a
  // warning (found by CI: a test counting the node's warnings).
  assert.deepEqual(secretWarnings('the secret of the test suite'), []);
  const newline = secretWarnings('q3V9xZ2kLm8pR4tW7yB1nC6dF0gH5jK\n');
  assert.equal(newline.length, 1);
  assert.match(newline[0] ?? '', /begins or ends with whitespace \(a newline of the file it came from\?\)/);
});

test('a config error never prints the secret, whichever key it was written under by mistake', () => {
  const secret = 'TopSecretValue-XYZ987-abcdef';
  const quoted = 'Zq8mP2xL"r7TvN4kWb9H\\sYc3J';
  for (const text of [`deid: { secret: "${secret}", options: "${secret}" }`, `deid: { secret: "${secret}" }\nlog: { level: "${secret}" }`, `deid: { secret: &s '${quoted}' }\ndicom: { port: [ *s ] }`]) {
    assert.throws(
      () => parseConfigText(text, 'leak.yaml'),
      (error: Error) => error instanceof ConfigError && !error.message.includes(secret) && !error.message.includes('r7TvN4kWb9H') && /\(hidden\)/.test(error.message),
      text,
    );
  }
});
