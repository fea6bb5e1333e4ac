/** What Gantry says of a weak deid.secret (src/config/secret.ts secretWarnings), and what it never
 * prints: found in the secrets review. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { secretWarnings } from '../../src/config/secret.js';

test('a guessable secret or one with whitespace around it is warned of; a random one is not', () => {
  for (const [secret, why] of [
    ['Password12345678', 'a word and digits'],
    ['changeme-changeme', 'a repeated word'],
    ['secretsecretsecret', 'a repeated word'],
    ['1234567890123456', 'digits only'],
    ['abababababababab', 'a repeated word'],
    ['aaaabbbbccccdddd', 'a word and digits'],
    ['q1w2q1w2e3e3r4r4z', '9 distinct characters'],
  ] as const) {
    const warnings = secretWarnings(secret);
    assert.equal(warnings.length, 1, secret);
    assert.match(warnings[0] ?? '', new RegExp(`looks guessable \\(${why}\\).*openssl rand -base64 32`), secret);
  }
  assert.deepEqual(secretWarnings('q3V9xZ2kLm8pR4tW7yB1nC6dF0gH5jK'), [], 'random');
  const newline = secretWarnings('q3V9xZ2kLm8pR4tW7yB1nC6dF0gH5jK\n');
  assert.equal(newline.length, 1);
  assert.match(newline[0] ?? '', /begins or ends with whitespace \(a newline of the file it came from\?\)/);
});

test('a config error never prints the secret, whichever key it was written under by mistake', () => {
  const secret = 'TopSecretValue-XYZ987-abcdef';
  for (const text of [`deid: { secret: "${secret}", options: "${secret}" }`, `deid: { secret: "${secret}" }\nlog: { level: "${secret}" }`]) {
    assert.throws(
      () => parseConfigText(text, 'leak.yaml'),
      (error: Error) => error instanceof ConfigError && !error.message.includes(secret) && /\(hidden\)/.test(error.message),
      text,
    );
  }
});
